/**
 * The daemon's entry point, started in the background by a thin client. A config error is written
 * to daemon.err (the client shows it) and the daemon exits with status 2. A later change to the
 * config file is picked up by the running daemon (see Daemon.checkConfig).
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { FileDigestCache } from '../cache/digest.js';
import { DiskStorage } from '../cache/disk-storage.js';
import { type ClientConfig, loadClientConfig } from '../config.js';
import { KilnError } from '../errors.js';
import { fileLogger } from '../log.js';
import {
  daemonErrorPath,
  daemonLogPath,
  defaultConfigPath,
  runtimeDir,
  runtimeDirProblem,
  socketPath,
} from '../paths.js';
import { Stats } from '../stats/stats.js';
import { CompileService } from './compile-service.js';
import { Daemon, type DaemonParts } from './daemon.js';
import { removeDeadScratch } from './scratch.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const NODE_CLI = path.join(here, '..', 'cli', 'kiln.js');
const NATIVE_CLIENT = path.join(here, '..', '..', 'bin', 'kiln');

/**
 * Everything that depends on the config: built at start and again when the config file changes.
 * Throws a KilnError on a config mistake, other errors when the cache dir cannot be made.
 */
async function buildParts(config: ClientConfig, digests: FileDigestCache): Promise<DaemonParts> {
  // Objects and manifests tell what a user builds: all the daemon writes itself (the cache dir,
  // its entries, manifests, stats and toolchains; its log) is private, unless `umask` says how
  // to share the cache. Compiler outputs get the caller's umask, passed explicitly. A cache dir
  // that exists already keeps its modes.
  const before = process.umask(config.umask ?? 0o077);
  try {
    fs.mkdirSync(config.cacheDir, { recursive: true });
  } catch (err) {
    process.umask(before);
    throw err;
  }
  const log = fileLogger(daemonLogPath(process.env), config.logLevel);
  const storage = new DiskStorage(config.cacheDir, config.cacheSize, log);
  const stats = new Stats(config.cacheDir);
  // Remote tiers (and their client libraries, loaded on first use) only when configured.
  const tiers = config.remotes.length
    ? new (await import('../cache/tiered-storage.js')).TieredStorage(storage, config.remotes, stats, log)
    : undefined;
  // The cluster client and the toolchain cache load only when a cluster is configured.
  const remote = config.dist
    ? await (await import('./cluster-root.js')).createRemoteCompiler({
        dist: config.dist,
        cacheDir: config.cacheDir,
        configDir: config.configFile ? path.dirname(config.configFile) : process.cwd(),
        stats,
        log,
      })
    : undefined;
  const service = new CompileService(config, tiers ?? storage, stats, digests, log, remote);
  return { config, service, storage, tiers, stats, log, remote };
}

async function main(): Promise<number> {
  const env = process.env;
  fs.mkdirSync(runtimeDir(env), { recursive: true, mode: 0o700 });
  // Never listen, log or write daemon.pid in a directory someone else controls.
  const problem = runtimeDirProblem(env);
  if (problem) {
    process.stderr.write(`kiln daemon: refusing to start: ${problem}\n`);
    return 2;
  }
  // The caller's umask (inherited from the client that started the daemon), for the outputs of a
  // client that does not send its own.
  const callerUmask = process.umask(0o077);
  // Kept across reloads: the digests of the compilers' own programs are facts about this machine,
  // not cache content; they live beside the socket and survive clearing the cache.
  const digests = new FileDigestCache(undefined, path.join(runtimeDir(env), 'binaries.json'));
  let first: DaemonParts;
  try {
    first = await buildParts(loadClientConfig(env), digests);
  } catch (err) {
    const message =
      err instanceof KilnError ? err.message : `cannot prepare the cache: ${(err as Error).message}`;
    fs.writeFileSync(daemonErrorPath(env), `${message}\n`);
    return 2;
  }
  fs.rmSync(daemonErrorPath(env), { force: true });
  const daemon = new Daemon({
    socket: socketPath(env),
    parts: first,
    configFile: env.KILN_CONFIG || defaultConfigPath(env),
    reload: async () => buildParts(loadClientConfig(env), digests),
    selfPaths: [NODE_CLI, NATIVE_CLIENT],
    callerUmask,
  });
  if (!(await daemon.start())) return 0;
  // Now the only daemon of this user: what a killed one left in the temp dir can go.
  removeDeadScratch();
  for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
    process.on(signal, () => void daemon.stop(true));
  }
  await daemon.stopped;
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err: Error) => {
    try {
      fs.writeFileSync(daemonErrorPath(process.env), `${err.message}\n`);
    } catch {
      // Nowhere left to report.
    }
    process.exit(1);
  },
);
