import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { findExecutable, kilnSelfPaths } from '../client/find-executable.js';
import { Action } from '../client/protocol.js';
import { control, spawnDaemon, startupError } from '../client/thin-client.js';
import { type ClientConfig, CONFIG_KEYS, loadClientConfig } from '../config.js';
import {
  KILN_ERR_DAEMON_START,
  KILN_ERR_DAEMON_UNREACHABLE,
  KILN_ERR_TOOLCHAIN_NOT_FOUND,
  KILN_ERR_USAGE,
  KilnError,
} from '../errors.js';
import { defaultConfigPath, socketPath } from '../paths.js';
import { emptyTierCounts, type StatsData } from '../stats/stats.js';
import { formatSize, parseSize } from '../util/size.js';
import { distStatus, distTestConn } from './dist-commands.js';

const here = path.dirname(fileURLToPath(import.meta.url));
export const MASQUERADE_NAMES = ['gcc', 'g++', 'cc', 'c++', 'clang', 'clang++'] as const;

const HELP = `kiln — a compiler cache

Usage:
  kiln <compiler> <args…>        compile through the cache (e.g. kiln gcc -c a.c -o a.o)
  <masquerade link> <args…>      a link named gcc, g++, cc, c++, clang or clang++ pointing at kiln

Commands:
  --start-server                 start the background daemon (compiles start it on demand too)
  --stop-server                  stop the daemon
  -s, --show-stats               show cache statistics [--stats-format text|json]
  --stats-format json            the same, as JSON
  -z, --zero-stats               reset the statistics
  -C, --clear [--toolchains]     remove all cached results and manifests (--toolchains: and the
                                 packaged toolchains of distributed compiles, kept otherwise)
  -M, --max-size SIZE            set cache_size (e.g. 20G) in the config file; the daemon picks it up
  -p, --show-config              every setting, its value and where it came from
  --dist-status [--json]         the cluster's pools, workers and recent jobs (--json: as JSON)
  --dist-test-conn               check the scheduler and every worker accept this client
  --install-bins DIR             create masquerade links (${MASQUERADE_NAMES.join(', ')}) in DIR
  --package-toolchain EXE OUT    pack the gcc or clang EXE for distributed compiles into OUT (.tar.gz)
  --help, --version

Configuration: ~/.config/kiln/config.toml (or KILN_CONFIG) and KILN_* environment variables;
see README.md. KILN_DISABLE=1 runs the compiler without kiln; KILN_NO_DIST=1 keeps compiles
local (no cluster). A running daemon picks up an edited config file, and keeps its settings when
the file has a mistake; --stop-server and -M never read the config, so they always work.
`;

function version(): string {
  const pkg = JSON.parse(fs.readFileSync(path.join(here, '..', '..', 'package.json'), 'utf8')) as {
    version: string;
  };
  return pkg.version;
}

/** The executable masquerade links should point at: the native client when it was built. */
export function clientExecutable(): string {
  const native = path.join(here, '..', '..', 'bin', 'kiln');
  return fs.existsSync(native) ? native : path.join(here, 'kiln.js');
}

/**
 * Stops the daemon and waits until it has exited (its hit workers first, then its last writes to
 * remote tiers and its stats): after this, the cache dir can be removed or moved.
 */
async function stopServer(env: NodeJS.ProcessEnv): Promise<number> {
  const ping = await control('ping', env, false);
  const pid = ping?.action === Action.RESULT ? Number(ping.stdout.toString().trim()) : Number.NaN;
  const res = await control('stop', env, false);
  if (!res) {
    process.stdout.write('kiln: no daemon was running\n');
    return 0;
  }
  // A zombie has exited: whether its parent (init, or a container's PID 1 that never reaps) has
  // collected it does not matter here.
  const running = () => {
    try {
      return fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.[0] !== 'Z';
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' && fs.existsSync('/proc/self/stat')) return false;
    }
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };
  const end = Date.now() + STOP_WAIT_MS;
  while (Number.isSafeInteger(pid) && pid > 0 && running() && Date.now() < end)
    await new Promise((r) => setTimeout(r, 20));
  if (Number.isSafeInteger(pid) && pid > 0 && running()) {
    process.stdout.write(`kiln: daemon ${pid} is stopping (still finishing its writes)\n`);
    return 0;
  }
  process.stdout.write('kiln: daemon stopped\n');
  return 0;
}

/** A stopping daemon waits up to 5 s for its hit workers and 10 s for remote tiers. */
const STOP_WAIT_MS = 20_000;

async function startServer(env: NodeJS.ProcessEnv): Promise<number> {
  if (await control('ping', env, false)) {
    process.stdout.write('kiln: the daemon is already running\n');
    return 0;
  }
  const since = Date.now();
  spawnDaemon(env);
  while (Date.now() - since < 10_000) {
    await new Promise((r) => setTimeout(r, 25));
    if (await control('ping', env, false)) {
      process.stdout.write(`kiln: daemon started on ${socketPath(env)}\n`);
      return 0;
    }
    const failure = startupError(env, since);
    if (failure) throw KILN_ERR_DAEMON_START(failure);
  }
  process.stderr.write(`kiln: the daemon did not answer on ${socketPath(env)} within 10 s\n`);
  return 1;
}

function row(label: string, value: string | number): string {
  return `${label.padEnd(40)}${String(value).padStart(14)}\n`;
}

export function formatStats(data: {
  stats: StatsData;
  cacheSize: number;
  cacheLimit: number;
  cacheDir: string;
  tiers?: readonly { label: string; readOnly: boolean; size?: number | undefined }[];
  /** Present when [dist] is configured: why the cluster is not used, or null. */
  cluster?: string | null;
  /** The daemon's pid and its hit workers' (from a daemon that has them). */
  daemon?: { pid: number; workers: readonly { pid: number; hits: number }[] };
}): string {
  const s = data.stats;
  const hits = s.hitsDirect + s.hitsPreprocessed;
  const cacheable = hits + s.misses;
  const nonCacheable = Object.values(s.nonCacheable).reduce((a, b) => a + b, 0);
  const errors = Object.values(s.errors).reduce((a, b) => a + b, 0);
  const sum = (r: Record<string, number> | undefined) => Object.values(r ?? {}).reduce((a, b) => a + b, 0);
  let out = '';
  out += row('Compile requests', s.requests);
  out += row('Cache hits', hits);
  out += row('  direct', s.hitsDirect);
  out += row('  preprocessed', s.hitsPreprocessed);
  out += row('Cache misses', s.misses);
  out += row('Cache hit rate', cacheable ? `${((100 * hits) / cacheable).toFixed(2)} %` : '-');
  out += row('Compile failures (user code)', s.compileFailed);
  out += row('Non-cacheable calls', nonCacheable);
  for (const [reason, n] of Object.entries(s.nonCacheable).sort((a, b) => b[1] - a[1]))
    out += row(`  ${reason}`, n);
  const languages = Object.entries(s.languages ?? {}).sort((a, b) => a[0].localeCompare(b[0]));
  if (languages.length) {
    out += `${'Per language'.padEnd(40)}${['hits', 'misses', 'failed', 'uncached'].map((h) => h.padStart(9)).join('')}\n`;
    for (const [lang, c] of languages) {
      out += `${`  ${lang}`.padEnd(40)}${[c.hits, c.misses, c.failed, c.uncached].map((n) => String(n).padStart(9)).join('')}\n`;
    }
  }
  out += row('Errors (compiled locally instead)', errors);
  for (const [kind, n] of Object.entries(s.errors).sort((a, b) => b[1] - a[1])) out += row(`  ${kind}`, n);
  if (sum(s.baseDir) > 0) {
    out += row('base_dir: entries not shared', sum(s.baseDir));
    for (const [k, n] of Object.entries(s.baseDir).sort((a, b) => b[1] - a[1])) out += row(`  ${k}`, n);
  }
  if (data.cluster !== undefined) out += `${'Cluster'.padEnd(40)}${data.cluster ?? 'no problem seen'}\n`;
  if (sum(s.distCompiles) + sum(s.distErrors) + sum(s.distLocal) + sum(s.distRetries) > 0) {
    out += row('Distributed compiles', sum(s.distCompiles));
    for (const [w, n] of Object.entries(s.distCompiles).sort()) out += row(`  on ${w}`, n);
    const retries = s.distRetries ?? {};
    out += row('Retried on another worker (worker lost)', retries.retried ?? 0);
    out += row('  succeeded there', retries.succeeded ?? 0);
    out += row('  compiled locally', retries['compiled locally'] ?? 0);
    out += row('Dist errors (compiled locally)', sum(s.distErrors));
    for (const [k, n] of Object.entries(s.distErrors).sort((a, b) => b[1] - a[1])) out += row(`  ${k}`, n);
    out += row('Kept local', sum(s.distLocal));
    for (const [k, n] of Object.entries(s.distLocal).sort((a, b) => b[1] - a[1])) out += row(`  ${k}`, n);
  }
  // Remote tiers: the configured ones (with their size where the backend can tell), then any
  // counted under an earlier config.
  const configured = data.tiers ?? [];
  const labels = [...new Set([...configured.map((t) => t.label), ...Object.keys(s.tiers ?? {})])];
  for (const label of labels) {
    const c = { ...emptyTierCounts(), ...s.tiers?.[label] };
    const tier = configured.find((t) => t.label === label);
    out += `Remote tier ${label}${tier?.readOnly ? ' (read-only)' : tier ? '' : ' (no longer configured)'}\n`;
    const lookups = c.hits + c.misses;
    out += row('  hits', c.hits);
    out += row('  misses', c.misses);
    out += row('  hit rate', lookups ? `${((100 * c.hits) / lookups).toFixed(2)} %` : '-');
    out += row('  writes', c.writes);
    out += row('    of which backfills', c.backfills);
    out += row('  read', formatSize(c.bytesRead));
    out += row('  written', formatSize(c.bytesWritten));
    out += row('  errors', c.errors);
    out += row('  timeouts', c.timeouts);
    out += row('  damaged entries (misses)', c.corrupt);
    out += row('  entries of another format', c.otherFormat);
    out += row('  skipped (backing off)', c.skipped);
    out += row('  writes dropped (queue full)', c.dropped);
    if (tier?.size !== undefined) out += row('  size', formatSize(tier.size));
  }
  if (data.daemon?.workers.length) {
    // Since the workers started: hits answered beside the daemon, the rest the daemon answered.
    const answered = data.daemon.workers.reduce((a, w) => a + w.hits, 0);
    out += row('Hit workers (running)', data.daemon.workers.length);
    out += row('  direct hits they answered', answered);
  }
  out += row('Cache location', data.cacheDir);
  out += row('Cache size', formatSize(data.cacheSize));
  out += row('Max cache size', formatSize(data.cacheLimit));
  out += row('Counting since', s.since);
  return out;
}

async function controlOrFail(
  command: string,
  env: NodeJS.ProcessEnv,
  args: readonly string[] = [],
): Promise<Buffer> {
  const res = await control(command, env, true, args);
  if (res?.action !== Action.RESULT) {
    const failure = startupError(env);
    if (failure) throw KILN_ERR_DAEMON_START(failure);
    throw KILN_ERR_DAEMON_UNREACHABLE(socketPath(env), 'no answer');
  }
  return res.stdout;
}

function installBins(dir: string | undefined): number {
  if (!dir) throw KILN_ERR_USAGE('--install-bins needs a directory');
  fs.mkdirSync(dir, { recursive: true });
  const target = clientExecutable();
  for (const name of MASQUERADE_NAMES) {
    const link = path.join(dir, name);
    fs.rmSync(link, { force: true });
    fs.symlinkSync(target, link);
  }
  process.stdout.write(
    `kiln: linked ${MASQUERADE_NAMES.join(', ')} in ${dir} to ${target}\n` +
      `      put ${path.resolve(dir)} first in PATH to compile through kiln\n`,
  );
  return 0;
}

async function packageCommand([exe, out]: readonly string[], self: string): Promise<number> {
  if (!exe || !out) throw KILN_ERR_USAGE('--package-toolchain needs a compiler and an output file');
  // Not a masquerade link back to kiln: that would pack kiln's client as "gcc".
  const skip = kilnSelfPaths(self, clientExecutable());
  const compiler = findExecutable(exe, process.env.PATH, process.cwd(), skip);
  if (!compiler) throw KILN_ERR_TOOLCHAIN_NOT_FOUND(exe);
  const { packageToolchain } = await import('../toolchain/package.js');
  const spec = await packageToolchain(compiler, out);
  const archive = path.resolve(out);
  process.stdout.write(`${JSON.stringify({ ...spec, archive, size: fs.statSync(archive).size }, null, 2)}\n`);
  return 0;
}

function showStats(rest: readonly string[], env: NodeJS.ProcessEnv): Promise<number> {
  let format = 'text';
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i]!;
    if (a === '--stats-format') format = rest[++i] ?? '';
    else if (a.startsWith('--stats-format=')) format = a.slice('--stats-format='.length);
    else if (a !== '-s' && a !== '--show-stats') throw KILN_ERR_USAGE(`unknown option ${a} for --show-stats`);
  }
  if (format !== 'text' && format !== 'json')
    throw KILN_ERR_USAGE(`--stats-format must be text or json, not "${format}"`);
  return controlOrFail('stats', env).then((out) => {
    const data = JSON.parse(out.toString());
    process.stdout.write(format === 'json' ? `${JSON.stringify(data, null, 2)}\n` : formatStats(data));
    return 0;
  });
}

function displayValue(value: unknown): string {
  if (value === undefined) return '(unset)';
  return typeof value === 'string' ? value : JSON.stringify(value);
}

/** `-p`: each setting with its value and origin, like `ccache -p` (`(origin) key = value`). */
function showConfig(config: ClientConfig): number {
  const values: Record<string, unknown> = {
    cache_dir: config.cacheDir,
    cache_size: formatSize(config.cacheSize),
    log_level: config.logLevel,
    idle_timeout: config.idleTimeout,
    direct_mode: config.directMode,
    depend_mode: config.dependMode,
    daemon_workers: config.daemonWorkers,
    umask: config.umask === undefined ? undefined : config.umask.toString(8).padStart(3, '0'),
  };
  const rows: [string, string, string][] = CONFIG_KEYS.map((k) => [
    config.origins[k] ?? 'default',
    k,
    displayValue(values[k]),
  ]);
  rows.push([config.origins['cache.base_dir'] ?? 'default', 'cache.base_dir', displayValue(config.baseDir)]);
  if (config.dist) {
    const { auth, toolchain_cache_size, scheduler_ca, resolver_config, toolchains, ...rest } = config.dist;
    const dist: Record<string, unknown> = {
      ...rest,
      'auth.type': auth.type,
      toolchain_cache_size: formatSize(toolchain_cache_size),
      resolver_config: Object.keys(resolver_config).length ? resolver_config : undefined,
      toolchains: toolchains.length ? toolchains : undefined,
    };
    if (scheduler_ca !== undefined) dist.scheduler_ca_file = '(read)';
    for (const [k, v] of Object.entries(dist)) {
      if (v === undefined) continue;
      rows.push([config.origins[`dist.${k}`] ?? 'default', `dist.${k}`, displayValue(v)]);
    }
    // The token itself is a secret: only whether there is one.
    if (auth.token)
      rows.push([config.origins['dist.auth.token_file'] ?? 'secret', 'dist.auth.token', '(set)']);
  }
  for (const [i, tier] of config.remotes.entries()) {
    const attrs = [
      tier.readOnly && 'read-only',
      `compression ${tier.compression}`,
      `connect ${tier.connectTimeoutMs} ms`,
      `operation ${tier.operationTimeoutMs} ms`,
      `write errors: ${tier.writeErrors}`,
    ].filter(Boolean);
    rows.push([
      config.origins['cache.remote'] ?? 'default',
      `cache.remote[${i + 1}]`,
      `${tier.type} ${tier.label}, ${attrs.join(', ')}`,
    ]);
  }
  process.stdout.write(`config file: ${config.configFile ?? '(none)'}\n`);
  for (const [origin, key, value] of rows) process.stdout.write(`(${origin}) ${key} = ${value}\n`);
  return 0;
}

/**
 * `-M SIZE`: writes `cache_size` into the config file (as ccache writes ccache.conf), keeping the
 * rest of the file as it is. The running daemon sees the file change and uses the new limit.
 */
function setMaxSize(size: string | undefined, env: NodeJS.ProcessEnv): number {
  if (!size) throw KILN_ERR_USAGE('--max-size needs a size, e.g. 20G');
  const bytes = parseSize(size);
  if (bytes === undefined || bytes === 0)
    throw KILN_ERR_USAGE(`--max-size takes a size such as 500M, 20G or 1.5GiB, not "${size}"`);
  const file = env.KILN_CONFIG || defaultConfigPath(env);
  let text = '';
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const line = `cache_size = ${JSON.stringify(size)}`;
  const lines = text.split('\n');
  const firstTable = lines.findIndex((l) => /^\s*\[/.test(l));
  const top = firstTable === -1 ? lines.length : firstTable;
  const existing = lines.slice(0, top).findIndex((l) => /^\s*cache_size\s*=/.test(l));
  if (existing !== -1) lines[existing] = line;
  else lines.splice(0, 0, line);
  let out = lines.join('\n');
  if (!out.endsWith('\n')) out += '\n';
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  const mode = fs.statSync(file, { throwIfNoEntry: false })?.mode;
  fs.writeFileSync(tmp, out, { mode: mode === undefined ? 0o644 : mode & 0o7777 });
  fs.renameSync(tmp, file);
  process.stdout.write(`kiln: set ${line} in ${file} (${formatSize(bytes)})\n`);
  if (env.KILN_CACHE_SIZE)
    process.stderr.write(
      `kiln: KILN_CACHE_SIZE=${env.KILN_CACHE_SIZE} in the environment still wins over it\n`,
    );
  return 0;
}

/** Runs a `kiln --…` command; returns the exit status. User mistakes print one line, no stack. */
export async function runCommand(argv: readonly string[], self: string): Promise<number> {
  const env = process.env;
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case undefined:
      case '--help':
      case '-h':
        process.stdout.write(HELP);
        return 0;
      case '--version':
      case '-V':
        process.stdout.write(`kiln ${version()}\n`);
        return 0;
      case '--install-bins':
        return installBins(rest[0]);
      case '--package-toolchain':
        return await packageCommand(rest, self);
    }
    // Only the commands that need the settings read the config: stopping, stats and clearing talk
    // to the daemon, which has its own (a running one keeps its settings when the file breaks).
    if (command.startsWith('--stats-format')) return await showStats(argv, env);
    switch (command) {
      case '--dist-status': {
        for (const a of rest)
          if (a !== '--json') throw KILN_ERR_USAGE(`unknown option ${a} for --dist-status`);
        return await distStatus(loadClientConfig(env), rest.includes('--json'));
      }
      case '--dist-test-conn':
        return await distTestConn(loadClientConfig(env));
      case '-p':
      case '--show-config':
        return showConfig(loadClientConfig(env));
      case '-M':
      case '--max-size':
        return setMaxSize(rest[0], env);
      case '--start-server':
        return await startServer(env);
      case '--stop-server':
        return await stopServer(env);
      case '-s':
      case '--show-stats':
        return await showStats(rest, env);
      case '-z':
      case '--zero-stats':
        await controlOrFail('zero-stats', env);
        process.stdout.write('kiln: statistics zeroed\n');
        return 0;
      case '-C':
      case '--clear': {
        for (const a of rest)
          if (a !== '--toolchains') throw KILN_ERR_USAGE(`unknown option ${a} for --clear`);
        process.stdout.write((await controlOrFail('clear', env, rest)).toString());
        return 0;
      }
      default:
        throw KILN_ERR_USAGE(`unknown option ${command}`);
    }
  } catch (err) {
    if (err instanceof KilnError) {
      process.stderr.write(`kiln: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
}
