import os from 'node:os';
import path from 'node:path';
import { definePlugin, PLUGIN_API_VERSION, PLUGIN_WORK_DIR, SANDBOX } from '@kiln/plugins';
import { BwrapSandbox } from './bwrap-sandbox.js';
import { type BwrapConfig, configSchema } from './config.js';

export { BwrapSandbox } from './bwrap-sandbox.js';
export type { BwrapConfig } from './config.js';

export default definePlugin<BwrapConfig>({
  name: 'bwrap',
  kind: 'sandbox',
  apiVersion: PLUGIN_API_VERSION,
  configSchema,
  // Does not look for bwrap: the worker calls probe() and reports what is missing.
  register(container, config) {
    const base = container.isRegistered(PLUGIN_WORK_DIR, true)
      ? container.resolve(PLUGIN_WORK_DIR)
      : os.tmpdir();
    const work_dir = config.work_dir ?? path.join(base, 'kiln-bwrap');
    container.register(SANDBOX, { useValue: new BwrapSandbox({ ...config, work_dir }) });
  },
});
