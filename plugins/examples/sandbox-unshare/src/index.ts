import os from 'node:os';
import path from 'node:path';
import { definePlugin, PLUGIN_API_VERSION, PLUGIN_WORK_DIR, SANDBOX } from '@kiln/plugins';
import { configSchema, type UnshareConfig } from './config.js';
import { UnshareSandbox } from './unshare-sandbox.js';

export type { UnshareConfig } from './config.js';
export { UnshareSandbox } from './unshare-sandbox.js';

export default definePlugin<UnshareConfig>({
  name: 'unshare',
  kind: 'sandbox',
  apiVersion: PLUGIN_API_VERSION,
  configSchema,
  // Checks nothing on the host: the worker calls probe() and stops with what it says is missing.
  register(container, config) {
    const base = container.isRegistered(PLUGIN_WORK_DIR, true)
      ? container.resolve(PLUGIN_WORK_DIR)
      : os.tmpdir();
    const work_dir = config.work_dir ?? path.join(base, 'kiln-unshare');
    container.register(SANDBOX, { useValue: new UnshareSandbox({ ...config, work_dir }) });
  },
});
