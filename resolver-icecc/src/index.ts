import os from 'node:os';
import {
  definePlugin,
  HOST_TRIPLE,
  hostTriple,
  PLUGIN_API_VERSION,
  PLUGIN_WORK_DIR,
  TOOLCHAIN_RESOLVER,
} from '@kiln/plugins';
import { configSchema, type IceccConfig } from './config.js';
import { IceccResolver } from './icecc-resolver.js';

export type { IceccConfig } from './config.js';
export { IceccResolver } from './icecc-resolver.js';
export { parseIceccVersion } from './icecc-version.js';

export default definePlugin<IceccConfig>({
  name: 'icecc',
  kind: 'resolver',
  apiVersion: PLUGIN_API_VERSION,
  configSchema,
  register(container, config) {
    const workDir = container.isRegistered(PLUGIN_WORK_DIR, true)
      ? container.resolve(PLUGIN_WORK_DIR)
      : os.tmpdir();
    const triple = container.isRegistered(HOST_TRIPLE, true) ? container.resolve(HOST_TRIPLE) : hostTriple();
    container.register(TOOLCHAIN_RESOLVER, {
      useValue: new IceccResolver({ config, workDir, hostTriple: triple }),
    });
  },
});
