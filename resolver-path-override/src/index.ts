import { definePlugin, PLUGIN_API_VERSION, TOOLCHAIN_RESOLVER } from '@kiln/plugins';
import { configSchema, type PathOverrideConfig } from './config.js';
import { PathOverrideResolver } from './path-override-resolver.js';

export type { PathOverrideConfig, ToolchainEntry } from './config.js';
export { normaliseClientPath, PathOverrideResolver } from './path-override-resolver.js';

export default definePlugin<PathOverrideConfig>({
  name: 'path-override',
  kind: 'resolver',
  apiVersion: PLUGIN_API_VERSION,
  configSchema,
  // A worker lists it with no table: it only materialises archives.
  register(container, config) {
    container.register(TOOLCHAIN_RESOLVER, { useValue: new PathOverrideResolver(config) });
  },
});
