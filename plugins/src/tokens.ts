import type { InjectionToken } from 'tsyringe';
import type { ToolchainResolver } from './resolver.js';
import type { Sandbox } from './sandbox.js';

// Registered symbols (Symbol.for), like definePlugin's brand: a plugin that ends up with its own copy
// of this SDK (a nested node_modules, a bundle) still registers under the tokens kiln resolves.

/** The sandbox a worker runs jobs in; exactly one is registered. */
export const SANDBOX: InjectionToken<Sandbox> = Symbol.for('kiln.Sandbox');
/** Toolchain resolvers; any number are registered, resolved with `container.resolveAll`. */
export const TOOLCHAIN_RESOLVER: InjectionToken<ToolchainResolver> = Symbol.for('kiln.ToolchainResolver');
/** A directory the plugin may use for its own files (job roots, downloads). */
export const PLUGIN_WORK_DIR: InjectionToken<string> = Symbol.for('kiln.PluginWorkDir');

export const PluginKind = { SANDBOX: 'sandbox', RESOLVER: 'resolver' } as const;
export type PluginKind = (typeof PluginKind)[keyof typeof PluginKind];

/** The token a plugin of each kind must register. */
export const TOKEN_FOR_KIND = {
  sandbox: SANDBOX,
  resolver: TOOLCHAIN_RESOLVER,
} as const satisfies Record<PluginKind, InjectionToken<unknown>>;
