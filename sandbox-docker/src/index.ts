import os from 'node:os';
import path from 'node:path';
import {
  definePlugin,
  HOST_TRIPLE,
  MAX_JOBS,
  PLUGIN_API_VERSION,
  PLUGIN_LOGGER,
  PLUGIN_WORK_DIR,
  type PluginLogger,
  SANDBOX,
  WORKER_ID,
} from '@kiln/plugins';
import type { DependencyContainer, InjectionToken } from 'tsyringe';
import { configSchema, type DockerConfig } from './config.js';
import { DockerSandbox } from './docker-sandbox.js';

export type { DockerConfig } from './config.js';
export { DockerSandbox, type DockerSandboxOptions } from './docker-sandbox.js';
export { RUNNER_SOURCE } from './runner-binary.js';

function optional<T>(container: DependencyContainer, token: InjectionToken<T>): T | undefined {
  return container.isRegistered(token, true) ? container.resolve(token) : undefined;
}

function prefixed(log: PluginLogger): PluginLogger {
  return {
    debug: (m) => log.debug(`sandbox docker: ${m}`),
    info: (m) => log.info(`sandbox docker: ${m}`),
    warn: (m) => log.warn(`sandbox docker: ${m}`),
    error: (m) => log.error(`sandbox docker: ${m}`),
  };
}

const ARCH: Record<string, string> = { x64: 'x86_64', arm64: 'aarch64' };

export default definePlugin<DockerConfig>({
  name: 'docker',
  kind: 'sandbox',
  apiVersion: PLUGIN_API_VERSION,
  configSchema,
  // Does not contact the engine: the worker calls probe() and reports what is missing.
  register(container, config) {
    const base = optional(container, PLUGIN_WORK_DIR) ?? os.tmpdir();
    const logger = optional(container, PLUGIN_LOGGER);
    container.register(SANDBOX, {
      useValue: new DockerSandbox({
        ...config,
        work_dir: config.work_dir ?? path.join(base, 'kiln-docker'),
        workerId: optional(container, WORKER_ID) ?? `host-${os.hostname()}`,
        hostTriple:
          optional(container, HOST_TRIPLE) ?? `${ARCH[process.arch] ?? process.arch}-unknown-linux-gnu`,
        maxJobs: optional(container, MAX_JOBS) ?? os.availableParallelism(),
        ...(logger ? { logger: prefixed(logger) } : {}),
      }),
    });
  },
});
