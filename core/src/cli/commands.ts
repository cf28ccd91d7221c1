import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { findExecutable, kilnSelfPaths } from '../client/find-executable.js';
import { Action } from '../client/protocol.js';
import { control, spawnDaemon, startupError } from '../client/thin-client.js';
import { loadClientConfig } from '../config.js';
import {
  KILN_ERR_DAEMON_UNREACHABLE,
  KILN_ERR_TOOLCHAIN_NOT_FOUND,
  KILN_ERR_USAGE,
  KilnError,
} from '../errors.js';
import { socketPath } from '../paths.js';
import type { StatsData } from '../stats/stats.js';
import { formatSize } from '../util/size.js';
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
  -z, --zero-stats               reset the statistics
  --dist-status                  the cluster's pools and workers as JSON
  --dist-test-conn               check the scheduler and every worker accept this client
  --install-bins DIR             create masquerade links (${MASQUERADE_NAMES.join(', ')}) in DIR
  --package-toolchain EXE OUT    pack the gcc or clang EXE for distributed compiles into OUT (.tar.gz)
  --help, --version

Configuration: ~/.config/kiln/config.toml (or KILN_CONFIG) and KILN_* environment variables;
see README.md. KILN_DISABLE=1 runs the compiler without kiln.
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
    if (failure) {
      process.stderr.write(`kiln: the daemon could not start: ${failure}\n`);
      return 2;
    }
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
}): string {
  const s = data.stats;
  const hits = s.hitsDirect + s.hitsPreprocessed;
  const cacheable = hits + s.misses;
  const nonCacheable = Object.values(s.nonCacheable).reduce((a, b) => a + b, 0);
  const errors = Object.values(s.errors).reduce((a, b) => a + b, 0);
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
  const sum = (r: Record<string, number> | undefined) => Object.values(r ?? {}).reduce((a, b) => a + b, 0);
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
  out += row('Cache location', data.cacheDir);
  out += row('Cache size', formatSize(data.cacheSize));
  out += row('Max cache size', formatSize(data.cacheLimit));
  out += row('Counting since', s.since);
  return out;
}

async function controlOrFail(command: string, env: NodeJS.ProcessEnv): Promise<Buffer> {
  const res = await control(command, env, true);
  if (res?.action !== Action.RESULT) {
    throw KILN_ERR_DAEMON_UNREACHABLE(socketPath(env), startupError(env) ?? 'no answer');
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
    const config = loadClientConfig(env); // a config mistake is reported here, before any daemon is involved
    switch (command) {
      case '--dist-status':
        return await distStatus(config);
      case '--dist-test-conn':
        return await distTestConn(config);
      case '--start-server':
        return await startServer(env);
      case '--stop-server': {
        const res = await control('stop', env, false);
        process.stdout.write(res ? 'kiln: daemon stopped\n' : 'kiln: no daemon was running\n');
        return 0;
      }
      case '-s':
      case '--show-stats': {
        let format = 'text';
        for (let i = 0; i < rest.length; i++) {
          const a = rest[i]!;
          if (a === '--stats-format') format = rest[++i] ?? '';
          else if (a.startsWith('--stats-format=')) format = a.slice('--stats-format='.length);
          else throw KILN_ERR_USAGE(`unknown option ${a} for --show-stats`);
        }
        if (format !== 'text' && format !== 'json')
          throw KILN_ERR_USAGE(`--stats-format must be text or json, not "${format}"`);
        const data = JSON.parse((await controlOrFail('stats', env)).toString());
        process.stdout.write(format === 'json' ? `${JSON.stringify(data, null, 2)}\n` : formatStats(data));
        return 0;
      }
      case '-z':
      case '--zero-stats':
        await controlOrFail('zero-stats', env);
        process.stdout.write('kiln: statistics zeroed\n');
        return 0;
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
