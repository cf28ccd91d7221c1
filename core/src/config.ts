import fs from 'node:fs';
import { parse as parseToml } from 'smol-toml';
import { type DistConfig, parseDistTable } from './cluster/client-config.js';
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
   * The umask for everything the daemon writes into the cache dir (ccache's `umask`), e.g. 0o002
   * to share it within a group; undefined: private (0o077), whatever the caller's umask.
   */
  readonly umask: number | undefined;
  /** Distributed compilation, when a `[dist]` table names a scheduler. */
  readonly dist: DistConfig | undefined;
  /** The file the settings came from, when there was one. */
  readonly configFile: string | undefined;
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
  umask: {
    env: 'KILN_UMASK',
    expected: 'an octal umask in quotes, such as "002" or "027"',
    // A string only: TOML reads `umask = 022` as an error and `umask = 22` as decimal 22.
    parse: (v) => (typeof v === 'string' && /^0?[0-7]{1,3}$/.test(v) ? Number.parseInt(v, 8) : undefined),
  } satisfies Field<number>,
} as const;

type Key = keyof typeof FIELDS;
const KEYS = Object.keys(FIELDS) as Key[];

/**
 * Reads the client config: the TOML file (KILN_CONFIG, else the XDG path), then KILN_* overrides.
 * Throws a KilnError that names the key on an unknown key or a bad value; a missing file is fine.
 */
export function loadClientConfig(env: Env): ClientConfig {
  const explicit = env.KILN_CONFIG;
  const file = explicit || defaultConfigPath(env);
  const values: Partial<Record<Key, unknown>> = {};
  let dist: DistConfig | undefined;
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
    for (const [key, value] of Object.entries(table)) {
      if (key === 'dist') {
        dist = parseDistTable(value, file, env);
        continue;
      }
      if (!(key in FIELDS)) throw KILN_ERR_CONFIG_UNKNOWN_KEY(key, file, [...KEYS, 'dist']);
      values[key as Key] = value;
    }
  }
  const read = <K extends Key>(key: K): ReturnType<(typeof FIELDS)[K]['parse']> | undefined => {
    const field = FIELDS[key];
    const fromEnv = env[field.env];
    const [raw, where] =
      fromEnv !== undefined && fromEnv !== ''
        ? [fromEnv, `environment variable ${field.env}`]
        : [values[key], file];
    if (raw === undefined) return undefined;
    const parsed = field.parse(raw);
    if (parsed === undefined) throw KILN_ERR_CONFIG_INVALID(key, where, field.expected);
    return parsed as ReturnType<(typeof FIELDS)[K]['parse']>;
  };
  return Object.freeze({
    cacheDir: read('cache_dir') ?? defaultCacheDir(env),
    cacheSize: read('cache_size') ?? 10 * 1024 ** 3,
    logLevel: read('log_level') ?? 'warn',
    idleTimeout: read('idle_timeout') ?? 600,
    directMode: read('direct_mode') ?? true,
    dependMode: read('depend_mode') ?? true,
    umask: read('umask'),
    dist,
    configFile: text === undefined ? undefined : file,
  });
}

export const CONFIG_KEYS: readonly string[] = KEYS;
export const CONFIG_ENV_VARS: readonly string[] = KEYS.map((k) => FIELDS[k].env);
