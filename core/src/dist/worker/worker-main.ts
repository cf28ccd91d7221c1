/**
 * `kiln-dist worker --config worker.toml`: the composition root. Plugins are loaded by name
 * through the SDK's loader into a tsyringe container; only here is anything resolved from it.
 */
import 'reflect-metadata';
import path from 'node:path';
import { loadPlugin, PluginKind, SANDBOX, TOOLCHAIN_RESOLVER, type ToolchainResolver } from '@kiln/plugins';
import { KILN_ERR_SANDBOX_UNAVAILABLE } from '@kiln/plugins/errors';
import { container } from 'tsyringe';
import type { Logger } from '../../log.js';
import { ArchiveResolver } from '../../toolchain/archive-resolver.js';
import { hostTriple } from '../../toolchain/elf.js';
import { parseAddr } from '../config-file.js';
import { Heartbeat, machineInfo } from './heartbeat.js';
import { ToolchainStore } from './toolchain-store.js';
import { createWorkerApp, type WorkerApp } from './worker-app.js';
import type { WorkerConfig } from './worker-config.js';

export interface RunningWorker {
  readonly worker: WorkerApp;
  readonly heartbeat: Heartbeat;
  readonly url: string;
  close(): Promise<void>;
}

export async function startWorker(
  config: WorkerConfig,
  configDir: string,
  version: string,
  log: Logger,
): Promise<RunningWorker> {
  const scope = container.createChildContainer();
  scope.register(TOOLCHAIN_RESOLVER, { useValue: new ArchiveResolver() });
  await loadPlugin({
    spec: config.sandbox,
    kind: PluginKind.SANDBOX,
    config: config.sandbox_config,
    container: scope,
    baseDir: configDir,
  });
  for (const spec of config.resolvers) {
    await loadPlugin({
      spec,
      kind: PluginKind.RESOLVER,
      config: undefined,
      container: scope,
      baseDir: configDir,
    });
  }
  const sandbox = scope.resolve(SANDBOX);
  const probe = await sandbox.probe();
  if (!probe.ok) throw KILN_ERR_SANDBOX_UNAVAILABLE(sandbox.name, probe.detail);
  const resolvers = new Map<string, ToolchainResolver>(
    scope.resolveAll(TOOLCHAIN_RESOLVER).map((r) => [r.kind, r]),
  );
  const store = new ToolchainStore(
    path.join(config.cache_dir, 'toolchains'),
    config.toolchain_cache_size,
    config.max_toolchain_size,
    resolvers,
  );
  const triple = config.host_triple ?? hostTriple();
  let heartbeat: Heartbeat | undefined;
  const worker = createWorkerApp({
    id: config.id,
    hostTriple: triple,
    version,
    sandbox,
    store,
    maxJobs: config.max_jobs,
    jobTimeoutMs: config.job_timeout * 1000,
    maxToolchainBytes: config.max_toolchain_size,
    maxJobInputBytes: config.max_job_input_size,
    requestTimeoutMs: config.request_timeout * 1000,
    limits: config.limits,
    logger: true,
    logLevel: config.log_level,
    onJobDone: (jobId, failed) => void heartbeat?.finished(jobId, config.id, failed),
    // Until the scheduler hears of it, it sends this toolchain's jobs to workers that reported it
    // (heartbeats come every worker_timeout / 4: 7.5 s by default), and this worker idles.
    onToolchainStored: () => void heartbeat?.beat(),
  });
  const { host, port } = parseAddr(config.public_addr, 'worker config');
  const address = await worker.app.listen({ host, port });
  // With port 0 the real port is only known now.
  const url = port === 0 ? address : config.public_url;
  heartbeat = new Heartbeat({
    schedulerUrl: config.scheduler_url.replace(/\/$/, ''),
    token: config.scheduler_auth.token,
    log,
    info: () => ({
      id: config.id,
      url,
      hostTriple: triple,
      ...machineInfo(),
      maxJobs: config.max_jobs,
      sandbox: sandbox.name,
      resolvers: [...resolvers.keys()],
      toolchains: store.digests(),
      toolchainUploads: worker.toolchainUploads(),
      runningJobs: worker.heldJobs(),
      jobKey: worker.jobKey,
      version,
    }),
  });
  if (!(await heartbeat.start())) log.warn(`scheduler ${config.scheduler_url} not reachable yet; retrying`);
  return {
    worker,
    heartbeat,
    url,
    async close() {
      heartbeat?.stop();
      await worker.app.close();
    },
  };
}
