import type { InjectionToken } from 'tsyringe';
import type { JobLimits } from './job-limits.js';
import type { ToolchainResolver } from './resolver.js';
import type { Sandbox } from './sandbox.js';

// Registered symbols (Symbol.for), like definePlugin's brand: a plugin that ends up with its own copy
// of this SDK (a nested node_modules, a bundle) still registers under the tokens kiln resolves.

/** The sandbox a worker runs jobs in; exactly one is registered. */
export const SANDBOX: InjectionToken<Sandbox> = Symbol.for('kiln.Sandbox');
/** Toolchain resolvers; any number are registered, resolved with `container.resolveAll`. */
export const TOOLCHAIN_RESOLVER: InjectionToken<ToolchainResolver> = Symbol.for('kiln.ToolchainResolver');
/** A directory the plugin may use for its own files (job roots, downloads); it exists. */
export const PLUGIN_WORK_DIR: InjectionToken<string> = Symbol.for('kiln.PluginWorkDir');

/** Where a plugin reports what the operator should know; lines carry the plugin's name. */
export interface PluginLogger {
  debug(message: string): void;
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}
/** The host process's logger (worker, scheduler or daemon). */
export const PLUGIN_LOGGER: InjectionToken<PluginLogger> = Symbol.for('kiln.PluginLogger');
/** The triple of the machine the process runs on, e.g. x86_64-unknown-linux-gnu. */
export const HOST_TRIPLE: InjectionToken<string> = Symbol.for('kiln.HostTriple');
/** Worker only: its id (as in worker.toml), e.g. to label what a sandbox creates. */
export const WORKER_ID: InjectionToken<string> = Symbol.for('kiln.WorkerId');
/** Worker only: the limits every job runs under (`[limits]` in worker.toml). */
export const JOB_LIMITS: InjectionToken<JobLimits> = Symbol.for('kiln.JobLimits');
/** Worker only: how many jobs run at once (`max_jobs`), e.g. to size a pool. */
export const MAX_JOBS: InjectionToken<number> = Symbol.for('kiln.MaxJobs');

export const PluginKind = { SANDBOX: 'sandbox', RESOLVER: 'resolver' } as const;
export type PluginKind = (typeof PluginKind)[keyof typeof PluginKind];

/** The token a plugin of each kind must register. */
export const TOKEN_FOR_KIND = {
  sandbox: SANDBOX,
  resolver: TOOLCHAIN_RESOLVER,
} as const satisfies Record<PluginKind, InjectionToken<unknown>>;
