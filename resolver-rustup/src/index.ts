import { definePlugin, HOST_TRIPLE, hostTriple, PLUGIN_API_VERSION, TOOLCHAIN_RESOLVER } from '@kiln/plugins';
import { configSchema, type RustupConfig } from './config.js';
import { RustupResolver } from './rustup-resolver.js';

export type { RustupConfig } from './config.js';
export {
  installCandidates,
  parseRustcVersion,
  ROOT_ENV,
  ROOT_RUSTC,
  RustupResolver,
} from './rustup-resolver.js';

export default definePlugin<RustupConfig>({
  name: 'rustup',
  kind: 'resolver',
  apiVersion: PLUGIN_API_VERSION,
  configSchema,
  register(container, config) {
    const triple = container.isRegistered(HOST_TRIPLE, true) ? container.resolve(HOST_TRIPLE) : hostTriple();
    container.register(TOOLCHAIN_RESOLVER, { useValue: new RustupResolver({ config, hostTriple: triple }) });
  },
});
