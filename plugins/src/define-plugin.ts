import type { DependencyContainer } from 'tsyringe';
import type { ObjectSchema } from './config-schema.js';
import type { PluginKind } from './tokens.js';

/** Bumped when the Sandbox or ToolchainResolver contract changes incompatibly. */
export const PLUGIN_API_VERSION = 1;

const BRAND = Symbol.for('kiln.plugin');

export interface PluginDescriptor<C = unknown> {
  /** Short name shown in errors and status ("bwrap"). */
  readonly name: string;
  readonly kind: PluginKind;
  /** The plugin API version it was written for: PLUGIN_API_VERSION when it was built. */
  readonly apiVersion: number;
  /** Schema of the plugin's config table; validated (defaults filled in, frozen) before `register`. */
  readonly configSchema: ObjectSchema;
  /**
   * Registers the implementation under the kind's token (SANDBOX or TOOLCHAIN_RESOLVER) in
   * `container`. May reject: startup then stops with KILN_ERR_PLUGIN_REGISTER naming the plugin.
   */
  register(container: DependencyContainer, config: C): void | Promise<void>;
}

/**
 * Declares a plugin; a plugin module's default export is the value this returns.
 *
 * @example
 * ```ts
 * export default definePlugin<{ bwrap_path: string }>({
 *   name: 'bwrap', kind: 'sandbox', apiVersion: PLUGIN_API_VERSION,
 *   configSchema: { type: 'object', properties: { bwrap_path: { type: 'string', default: 'bwrap' } } },
 *   register(container, config) {
 *     container.register(SANDBOX, { useValue: new BwrapSandbox(config) });
 *   },
 * });
 * ```
 */
export function definePlugin<C>(descriptor: PluginDescriptor<C>): PluginDescriptor<C> {
  return Object.freeze(Object.assign(Object.create(null), descriptor, { [BRAND]: true }));
}

export function isBranded(value: unknown): boolean {
  return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[BRAND] === true;
}
