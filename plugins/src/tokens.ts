import type { InjectionToken } from 'tsyringe';
import type { ToolchainResolver } from './resolver.js';
import type { Sandbox } from './sandbox.js';

/** The sandbox a worker runs jobs in; exactly one is registered. */
export const SANDBOX: InjectionToken<Sandbox> = Symbol('kiln.Sandbox');
/** Toolchain resolvers; any number are registered, resolved with `container.resolveAll`. */
export const TOOLCHAIN_RESOLVER: InjectionToken<ToolchainResolver> = Symbol('kiln.ToolchainResolver');
/** A directory the plugin may use for its own files (job roots, downloads). */
export const PLUGIN_WORK_DIR: InjectionToken<string> = Symbol('kiln.PluginWorkDir');

export const PluginKind = { SANDBOX: 'sandbox', RESOLVER: 'resolver' } as const;
export type PluginKind = (typeof PluginKind)[keyof typeof PluginKind];

/** The token a plugin of each kind must register. */
export const TOKEN_FOR_KIND = {
  sandbox: SANDBOX,
  resolver: TOOLCHAIN_RESOLVER,
} as const satisfies Record<PluginKind, InjectionToken<unknown>>;
