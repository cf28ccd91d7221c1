import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
// The subpath: the package's index loads tar and the plugin loader, 23 ms of every daemon start.
import { didYouMean } from '@kiln/plugins/config-schema';
import { parse as parseToml } from 'smol-toml';
import { parseRemoteEnv, parseRemoteTables, type RemoteTierConfig } from './cache/remote/tier-config.js';
import { type DistConfig, parseDistTable } from './cluster/client-config.js';
import { fromSccacheClient } from './cluster/sccache-names.js';
import { KILN_ERR_CONFIG_INVALID, KILN_ERR_CONFIG_PARSE, KILN_ERR_CONFIG_UNKNOWN_KEY } from './errors.js';
import { defaultCacheDir, defaultConfigPath } from './paths.js';
import { parseSize } from './util/size.js';
import { tomlErrorDetail } from './util/toml-error.js';

export const LOG_LEVELS = ['error', 'warn', 'info', 'debug'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface ClientConfig {
  /** Where cache entries, manifests and stats live. */
  readonly cacheDir: string;
  /** Upper bound of the cache in bytes; the oldest entries are evicted past it. */
  readonly cacheSize: number;
  readonly logLevel: LogLevel;
  /** Seconds without a request before the daemon exits; 0 keeps it running. */
  readonly idleTimeout: number;
  /** Use manifests to hit without running the preprocessor. */
  readonly directMode: boolean;
  /** On a cold miss, learn headers from a depfile instead of running the preprocessor first. */
  readonly dependMode: boolean;
  /**
   * Processes beside the daemon that answer cache hits, each on its own core, so hits of a
   * parallel build never queue on one JavaScript thread. Misses go to the daemon.
   */
  readonly daemonWorkers: number;
  /**
   * The umask for everything the daemon writes into the cache dir (ccache's `umask`), e.g. 0o002
   * to share it within a group; undefined: private (0o077), whatever the caller's umask.
   */
  readonly umask: number | undefined;
  /**
   * `[cache] base_dir` (KILN_BASE_DIR): absolute paths under it are keyed relative to the working
   * directory, so builds in two directories under it share entries where the output allows
   * (compiler/base-dir.ts). Undefined: paths are keyed as they are.
   */
  readonly baseDir: string | undefined;
  /** Shared cache tiers after the local disk, in order (`[[cache.remote]]`, KILN_REMOTE_STORAGE). */
  readonly remotes: readonly RemoteTierConfig[];
  /** Distributed compilation, when a `[dist]` table names a scheduler. */
  readonly dist: DistConfig | undefined;
  /** The file the settings came from, when there was one. */
  readonly configFile: string | undefined;
  /**
   * Where each setting came from, by key (`cache_size`, `dist.job_timeout`…): `default`,
   * `<file>:<line>` or `environment variable KILN_…`. For `kiln --show-config`.
   */
  readonly origins: Readonly<Record<string, string>>;
}

type Env = Readonly<Record<string, string | undefined>>;

interface Field<T> {
  readonly env: string;
  readonly expected: string;
  parse(value: unknown): T | undefined;
}

function parseBool(v: unknown): boolean | undefined {
  if (typeof v === 'boolean') return v;
  if (v === 'true' || v === '1') return true;
  if (v === 'false' || v === '0') return false;
  return undefined;
}

/** The config file's keys, each with its environment override. The names follow sccache/ccache. */
const FIELDS = {
  cache_dir: {
    env: 'KILN_CACHE_DIR',
    expected: 'a non-empty path',
    parse: (v) => (typeof v === 'string' && v.length > 0 ? v : undefined),
  } satisfies Field<string>,
  cache_size: {
    env: 'KILN_CACHE_SIZE',
    expected: 'a size such as "10G", "500M" or a byte count',
    parse: (v) => (typeof v === 'string' || typeof v === 'number' ? parseSize(v) : undefined),
  } satisfies Field<number>,
  log_level: {
    env: 'KILN_LOG_LEVEL',
    expected: `one of ${LOG_LEVELS.join(', ')}`,
    parse: (v) => ((LOG_LEVELS as readonly unknown[]).includes(v) ? (v as LogLevel) : undefined),
  } satisfies Field<LogLevel>,
  idle_timeout: {
    env: 'KILN_IDLE_TIMEOUT',
    expected: 'a whole number of seconds (0: never)',
    parse: (v) => {
      const n = typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v;
      return typeof n === 'number' && Number.isSafeInteger(n) && n >= 0 ? n : undefined;
    },
  } satisfies Field<number>,
  direct_mode: {
    env: 'KILN_DIRECT_MODE',
    expected: 'true or false',
    parse: parseBool,
  } satisfies Field<boolean>,
  depend_mode: {
    env: 'KILN_DEPEND_MODE',
    expected: 'true or false',
    parse: parseBool,
  } satisfies Field<boolean>,
  daemon_workers: {
    env: 'KILN_DAEMON_WORKERS',
    expected: 'a whole number of processes (0: the daemon answers alone)',
    parse: (v) => {
      const n = typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v;
      return typeof n === 'number' && Number.isSafeInteger(n) && n >= 0 && n <= 256 ? n : undefined;
    },
  } satisfies Field<number>,
  umask: {
    env: 'KILN_UMASK',
    expected: 'an octal umask in quotes, such as "002" or "027"',
    // A string only: TOML reads `umask = 022` as an error and `umask = 22` as decimal 22.
    parse: (v) => (typeof v === 'string' && /^0?[0-7]{1,3}$/.test(v) ? Number.parseInt(v, 8) : undefined),
  } satisfies Field<number>,
} as const;

type Key = keyof typeof FIELDS;
const KEYS = Object.keys(FIELDS) as Key[];

type DistEnvKind = 'string' | 'boolean' | 'integer' | 'list';
/**
 * The `[dist]` keys that have an environment override, which wins over the file (like the
 * top-level keys). Tables (`resolver_config`, `[[dist.toolchains]]`) have none; the token's own
 * variable, KILN_DIST_CLIENT_TOKEN, is read by parseDistTable.
 */
export const DIST_ENV: Readonly<Record<string, readonly [string, DistEnvKind]>> = {
  scheduler_url: ['KILN_DIST_SCHEDULER_URL', 'string'],
  scheduler_cert_sha256: ['KILN_DIST_SCHEDULER_CERT_SHA256', 'string'],
  scheduler_ca_file: ['KILN_DIST_SCHEDULER_CA_FILE', 'string'],
  insecure: ['KILN_DIST_INSECURE', 'boolean'],
  'auth.type': ['KILN_DIST_AUTH_TYPE', 'string'],
  'auth.token_file': ['KILN_DIST_AUTH_TOKEN_FILE', 'string'],
  force_remote_build: ['KILN_DIST_FORCE_REMOTE_BUILD', 'boolean'],
  keep_tiny_local: ['KILN_DIST_KEEP_TINY_LOCAL', 'boolean'],
  toolchain_cache_size: ['KILN_DIST_TOOLCHAIN_CACHE_SIZE', 'string'],
  job_timeout: ['KILN_DIST_JOB_TIMEOUT', 'integer'],
  connect_timeout: ['KILN_DIST_CONNECT_TIMEOUT', 'integer'],
  resolvers: ['KILN_DIST_RESOLVERS', 'list'],
  client_name: ['KILN_DIST_CLIENT_NAME', 'string'],
};

/**
 * One hit worker per core beyond the daemon's own, at most 15: past that the shared disk and the
 * daemon's share of the work (misses, stats) decide, not the JavaScript thread (see README).
 * Follows the CPUs this process may run on (taskset, cgroups).
 */
export function defaultDaemonWorkers(): number {
  return Math.max(0, Math.min(os.availableParallelism() - 1, 15));
}

/** Whether the caller asked for no distributed compiles (one build: `KILN_NO_DIST=1 make`). */
export function noDist(env: Env): boolean {
  const v = env.KILN_NO_DIST;
  return v === '1' || v === 'true';
}

/** The 1-based line of `key` in `[table]` (or at the top when table is ''), when it is easy to find. */
function lineOf(text: string, table: string, key: string): number | undefined {
  let current = '';
  const lines = text.split('\n');
  const dotted = key.split('.');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    const header = /^\[\[?\s*([^\]]+?)\s*\]\]?/.exec(line);
    if (header) {
      current = header[1]!.replace(/\s+/g, '');
      continue;
    }
    // `[dist.auth] type = …` or `[dist] auth.type = …`.
    for (let split = 0; split < dotted.length; split++) {
      const tablePart = [table, ...dotted.slice(0, split)].filter(Boolean).join('.');
      const keyPart = dotted.slice(split).join('.');
      if (
        current === tablePart &&
        new RegExp(`^"?${keyPart.replace(/\./g, '\\s*\\.\\s*')}"?\\s*=`).test(line)
      )
        return i + 1;
    }
  }
  return undefined;
}

function at(file: string, text: string, table: string, key: string): string {
  const line = lineOf(text, table, key);
  return line === undefined ? file : `${file}:${line}`;
}

/** The file's `[dist]` table with the KILN_DIST_* overrides on top; undefined when neither has any. */
function distWithEnv(
  fileTable: unknown,
  env: Env,
  origins: Record<string, string>,
  where: (key: string) => string,
): Record<string, unknown> | undefined {
  const fromFile = typeof fileTable === 'object' && fileTable !== null && !Array.isArray(fileTable);
  const table: Record<string, unknown> = fromFile
    ? structuredClone(fileTable as Record<string, unknown>)
    : {};
  let any = fileTable !== undefined;
  for (const [key, [name, kind]] of Object.entries(DIST_ENV)) {
    const raw = env[name];
    const [head, sub] = key.split('.') as [string, string | undefined];
    const inFile =
      sub === undefined
        ? table[head] !== undefined
        : (table[head] as Record<string, unknown> | undefined)?.[sub] !== undefined;
    if (raw === undefined || raw === '') {
      if (inFile) origins[`dist.${key}`] = where(key);
      continue;
    }
    let value: unknown = raw;
    if (kind === 'boolean') value = parseBool(raw);
    else if (kind === 'integer') value = /^\d+$/.test(raw) ? Number(raw) : undefined;
    else if (kind === 'list')
      value = raw
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean);
    const expected = kind === 'boolean' ? 'true or false' : 'a whole number';
    if (value === undefined)
      throw KILN_ERR_CONFIG_INVALID(`dist.${key}`, `environment variable ${name}`, expected);
    if (sub === undefined) table[head] = value;
    else table[head] = { ...((table[head] as Record<string, unknown> | undefined) ?? {}), [sub]: value };
    origins[`dist.${key}`] = `environment variable ${name}`;
    any = true;
  }
  return any ? table : undefined;
}

/** The remote tiers: KILN_REMOTE_STORAGE when set, else the file's `[[cache.remote]]` tables. */
function readRemotes(
  cacheTable: unknown,
  file: string,
  env: Env,
  origins: Record<string, string>,
): readonly RemoteTierConfig[] {
  const readOnlyRaw = env.KILN_REMOTE_READ_ONLY;
  const forceReadOnly = readOnlyRaw ? parseBool(readOnlyRaw) : false;
  if (forceReadOnly === undefined)
    throw KILN_ERR_CONFIG_INVALID('read_only', 'environment variable KILN_REMOTE_READ_ONLY', 'true or false');
  const fromEnv = env.KILN_REMOTE_STORAGE;
  if (fromEnv !== undefined && fromEnv.trim() !== '') {
    origins['cache.remote'] = 'environment variable KILN_REMOTE_STORAGE';
    return Object.freeze(parseRemoteEnv(fromEnv, 'KILN_REMOTE_STORAGE', forceReadOnly));
  }
  const list = (cacheTable as Record<string, unknown> | undefined)?.remote;
  if (list === undefined) {
    origins['cache.remote'] = 'default';
    return [];
  }
  origins['cache.remote'] = file;
  return Object.freeze(parseRemoteTables(list, file, forceReadOnly));
}

/**
 * `[cache] base_dir`, or KILN_BASE_DIR over it: an absolute directory other than `/` (ccache's
 * advice: `/` would relocate system headers too), normalised (`/a/./b/../c/` is `/a/c`).
 */
function readBaseDir(
  cacheTable: unknown,
  file: string,
  text: string,
  env: Env,
  origins: Record<string, string>,
): string | undefined {
  const fromEnv = env.KILN_BASE_DIR;
  const [raw, where] =
    fromEnv !== undefined && fromEnv !== ''
      ? [fromEnv, 'environment variable KILN_BASE_DIR']
      : [(cacheTable as Record<string, unknown> | undefined)?.base_dir, at(file, text, 'cache', 'base_dir')];
  origins['cache.base_dir'] = raw === undefined ? 'default' : where;
  if (raw === undefined) return undefined;
  // Compared as a string prefix with the paths compilers print: spelled the plain way.
  const dir = typeof raw === 'string' ? path.posix.normalize(raw).replace(/\/+$/, '') : '';
  if (typeof raw !== 'string' || !raw.startsWith('/') || dir === '')
    throw KILN_ERR_CONFIG_INVALID(
      'cache.base_dir',
      where,
      'an absolute directory other than / (such as "/home/you/src")',
    );
  return dir;
}

/**
 * Reads the client config: the TOML file (KILN_CONFIG, else the XDG path), then KILN_* overrides.
 * Throws a KilnError that names the key on an unknown key or a bad value; a missing file is fine.
 */
export function loadClientConfig(env: Env): ClientConfig {
  const explicit = env.KILN_CONFIG;
  const file = explicit || defaultConfigPath(env);
  const values: Partial<Record<Key, unknown>> = {};
  let distTable: unknown;
  let cacheTable: unknown;
  let text: string | undefined;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (explicit || (code !== 'ENOENT' && code !== 'ENOTDIR')) {
      throw KILN_ERR_CONFIG_PARSE(file, (err as Error).message);
    }
  }
  if (text !== undefined) {
    let table: Record<string, unknown>;
    try {
      table = parseToml(text);
    } catch (err) {
      throw KILN_ERR_CONFIG_PARSE(file, tomlErrorDetail(err));
    }
    // sccache's client names ([cache.disk]) read as kiln's.
    table = fromSccacheClient(table).table;
    for (const [key, value] of Object.entries(table)) {
      if (key === 'dist') {
        distTable = value;
        continue;
      }
      if (key === 'cache') {
        cacheTable = value;
        for (const sub of Object.keys(typeof value === 'object' && value !== null ? value : {}))
          if (sub !== 'remote' && sub !== 'base_dir')
            throw KILN_ERR_CONFIG_UNKNOWN_KEY(
              sub,
              at(file, text, 'cache', sub),
              ['remote', 'base_dir'],
              didYouMean(sub, ['remote', 'base_dir']),
            );
        continue;
      }
      if (!(key in FIELDS))
        throw KILN_ERR_CONFIG_UNKNOWN_KEY(
          key,
          at(file, text, '', key),
          [...KEYS, 'cache', 'dist'],
          didYouMean(key, [...KEYS, 'cache', 'dist']),
        );
      values[key as Key] = value;
    }
  }
  const origins: Record<string, string> = {};
  const read = <K extends Key>(key: K): ReturnType<(typeof FIELDS)[K]['parse']> | undefined => {
    const field = FIELDS[key];
    const fromEnv = env[field.env];
    const [raw, where] =
      fromEnv !== undefined && fromEnv !== ''
        ? [fromEnv, `environment variable ${field.env}`]
        : [values[key], at(file, text ?? '', '', key)];
    origins[key] = raw === undefined ? 'default' : where;
    if (raw === undefined) return undefined;
    const parsed = field.parse(raw);
    if (parsed === undefined) throw KILN_ERR_CONFIG_INVALID(key, where, field.expected);
    return parsed as ReturnType<(typeof FIELDS)[K]['parse']>;
  };
  const settings = {
    cacheDir: read('cache_dir') ?? defaultCacheDir(env),
    cacheSize: read('cache_size') ?? 10 * 1024 ** 3,
    logLevel: read('log_level') ?? 'warn',
    idleTimeout: read('idle_timeout') ?? 600,
    directMode: read('direct_mode') ?? true,
    dependMode: read('depend_mode') ?? true,
    daemonWorkers: read('daemon_workers') ?? defaultDaemonWorkers(),
    umask: read('umask'),
  };
  const remotes = readRemotes(cacheTable, file, env, origins);
  const baseDir = readBaseDir(cacheTable, file, text ?? '', env, origins);
  const merged = distWithEnv(distTable, env, origins, (key) => at(file, text ?? '', 'dist', key));
  const envOnly = distTable === undefined;
  const dist =
    merged && parseDistTable(merged, envOnly ? 'the KILN_DIST_* environment variables' : file, env);
  return Object.freeze({
    ...settings,
    baseDir,
    remotes,
    dist,
    configFile: text === undefined ? undefined : file,
    origins: Object.freeze(origins),
  });
}

export const CONFIG_KEYS: readonly string[] = KEYS;
export const CONFIG_ENV_VARS: readonly string[] = [
  ...KEYS.map((k) => FIELDS[k].env),
  'KILN_REMOTE_STORAGE',
  'KILN_REMOTE_READ_ONLY',
  'KILN_BASE_DIR',
];
