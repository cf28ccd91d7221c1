/**
 * `kiln-dist worker --config worker.toml`: the composition root. Plugins are loaded by name
 * through the SDK's loader into a tsyringe container; only here is anything resolved from it.
 */
import 'reflect-metadata';
import fs from 'node:fs';
import path from 'node:path';
import {
  HOST_TRIPLE,
  hostTriple,
  JOB_LIMITS,
  loadPlugin,
  MAX_JOBS,
  PLUGIN_LOGGER,
  PLUGIN_WORK_DIR,
  PluginKind,
  SANDBOX,
  TOOLCHAIN_RESOLVER,
  type ToolchainResolver,
  WORKER_ID,
} from '@kiln/plugins';
import { KILN_ERR_SANDBOX_UNAVAILABLE } from '@kiln/plugins/errors';
import { container } from 'tsyringe';
import { KILN_ERR_AUTH_INVALID, KILN_ERR_CONFIG_INVALID, KILN_ERR_TLS_CERT } from '../../errors.js';
import type { Logger } from '../../log.js';
import { ArchiveResolver } from '../../toolchain/archive-resolver.js';
import { claimedExpiry } from '../auth.js';
import { checkLogFile, parseAddr } from '../config-file.js';
import { listenOn } from '../http-server.js';
import type { LogStream } from '../server-log.js';
import { certificateHosts, loadServerTls, type ServerTls } from '../tls/server-tls.js';
import { Heartbeat, machineInfo } from './heartbeat.js';
import { ToolchainStore } from './toolchain-store.js';
import { createWorkerApp, type WorkerApp } from './worker-app.js';
import { currentWorkerToken, type WorkerConfig } from './worker-config.js';

export interface RunningWorker {
  readonly worker: WorkerApp;
  readonly heartbeat: Heartbeat;
  /** The URL the scheduler hands to clients. */
  readonly url: string;
  /** Where the server actually listens (with port 0, the port the OS picked). */
  readonly address: string;
  /** The certificate it serves; undefined for a plain-http (insecure) worker. */
  readonly tls: ServerTls | undefined;
  close(): Promise<void>;
}

const DAY_S = 86_400;

/** Refuses a token that has no expiry or has expired; warns when it expires within two weeks. */
function checkTokenExpiry(token: string, log: Logger): void {
  const exp = claimedExpiry(token);
  const rotate = 'issue a new one with `kiln-dist auth rotate-worker-token`';
  if (exp === undefined)
    throw KILN_ERR_AUTH_INVALID(
      `the worker token has no expiry (an old token, refused by the scheduler): ${rotate}`,
    );
  const left = exp - Date.now() / 1000;
  if (left <= 0)
    throw KILN_ERR_AUTH_INVALID(
      `the worker token expired on ${new Date(exp * 1000).toISOString()}: ${rotate}`,
    );
  if (left < 14 * DAY_S) log.warn(`the worker token expires in ${Math.ceil(left / DAY_S)} day(s): ${rotate}`);
}

function readCa(file: string | undefined): string | undefined {
  if (!file) return undefined;
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw KILN_ERR_TLS_CERT(file, `cannot read scheduler_ca_file: ${(err as NodeJS.ErrnoException).code}`);
  }
}

/** Creates the plugins' directory in cache_dir; a cache_dir this user cannot write says what to do. */
function makeCacheDir(workDir: string, cacheDir: string): void {
  try {
    fs.mkdirSync(workDir, { recursive: true, mode: 0o711 });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EACCES' && code !== 'EPERM' && code !== 'EROFS') throw err;
    const user = process.getuid?.() === 0 ? '' : ' (this worker does not run as root)';
    throw KILN_ERR_CONFIG_INVALID(
      'cache_dir',
      'worker.toml',
      `a directory this worker can write: it cannot create ${workDir} (${code})${user}. Set cache_dir to a directory of its own, such as ~/.cache/kiln-worker (the default when not root), or create ${cacheDir} and give it to this user; the bwrap sandbox's [sandbox_config] work_dir (default cache_dir/plugins/kiln-bwrap) must be writable too`,
    );
  }
}

export async function startWorker(
  config: WorkerConfig,
  configDir: string,
  version: string,
  log: Logger,
  /** Where the HTTP server's log lines go (server-log.ts); undefined: log_file or stdout. */
  logStream?: LogStream,
): Promise<RunningWorker> {
  const scope = container.createChildContainer();
  // The context plugins may inject (see @kiln/plugins tokens.ts).
  const workDir = path.join(config.cache_dir, 'plugins');
  makeCacheDir(workDir, config.cache_dir);
  checkLogFile(config.log_file, 'worker.toml');
  const triple = config.host_triple ?? hostTriple();
  scope.register(PLUGIN_WORK_DIR, { useValue: workDir });
  scope.register(PLUGIN_LOGGER, { useValue: log });
  scope.register(HOST_TRIPLE, { useValue: triple });
  scope.register(WORKER_ID, { useValue: config.id });
  scope.register(JOB_LIMITS, { useValue: config.limits });
  scope.register(MAX_JOBS, { useValue: config.max_jobs });
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
      config: config.resolver_config[spec],
      container: scope,
      baseDir: configDir,
    });
  }
  const token = () => currentWorkerToken(config);
  checkTokenExpiry(token(), log);
  const ca = readCa(config.scheduler_ca_file);
  const { host, port } = parseAddr(config.public_addr, 'worker config');
  const tls =
    config.insecure && !config.tls
      ? undefined
      : loadServerTls(
          config.tls,
          config.cache_dir,
          `kiln worker ${config.id}`,
          certificateHosts(host, new URL(config.public_url).hostname.replace(/^\[|\]$/g, '')),
        );
  if (!tls)
    log.warn(
      'insecure = true: serving plain HTTP; job inputs, outputs and tokens cross the network readable',
    );
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
    ...(config.log_file ? { logFile: config.log_file } : {}),
    ...(logStream ? { logStream } : {}),
    ...(tls ? { tls } : {}),
    ...(config.metrics_token ? { metricsToken: () => config.metrics_token! } : {}),
    onJobDone: (jobId, failed) => void heartbeat?.finished(jobId, config.id, failed),
    // Until the scheduler hears of it, it sends this toolchain's jobs to workers that reported it
    // (heartbeats come every worker_timeout / 4: 7.5 s by default), and this worker idles.
    onToolchainStored: () => void heartbeat?.beat(),
  });
  const listening = await listenOn(worker.app, `worker ${config.id}`, host, port);
  const address = listening.bound;
  // With port 0 the real port is only known now.
  const url = port === 0 ? listening.url : config.public_url;
  heartbeat = new Heartbeat({
    schedulerUrl: config.scheduler_url.replace(/\/$/, ''),
    token,
    insecure: config.insecure,
    ...(config.scheduler_cert_sha256 ? { pin: config.scheduler_cert_sha256 } : {}),
    ...(ca ? { ca } : {}),
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
      ...(tls ? { certSha256: tls.fingerprint } : {}),
    }),
  });
  if (!(await heartbeat.start())) log.warn(`scheduler ${config.scheduler_url} not reachable yet; retrying`);
  return {
    worker,
    heartbeat,
    url,
    address,
    tls,
    /**
     * Signs off at the scheduler (out of its pool at once), refuses new requests (fastify answers
     * 503 while closing) and waits for running jobs, at most job_timeout: a job cannot run longer.
     */
    async close() {
      const running = worker.heldJobs().length;
      if (heartbeat) await heartbeat.leave(config.id);
      if (running > 0)
        log.info(`signed off; finishing ${running} running job(s), for at most ${config.job_timeout} s`);
      let bound: NodeJS.Timeout | undefined;
      await Promise.race([
        worker.app.close(),
        new Promise<void>((resolve) => {
          bound = setTimeout(() => {
            log.warn(`jobs still running after ${config.job_timeout} s; stopping anyway`);
            resolve();
          }, config.job_timeout * 1000);
        }),
      ]);
      clearTimeout(bound);
      heartbeat?.stop();
    },
  };
}
