/**
 * `[[cache.remote]]` tables and KILN_REMOTE_STORAGE: the common keys every tier has, checked
 * here; the backend's own keys, checked by its module. Runs when the config is read, without
 * loading any client library.
 */
import { didYouMean } from '@kiln/plugins/config-schema';
import {
  KILN_ERR_CONFIG_INVALID,
  KILN_ERR_CONFIG_MISSING,
  KILN_ERR_CONFIG_UNKNOWN_KEY,
} from '../../errors.js';
import type { BackendModule } from './backend.js';
import { CODECS, type Codec, codecAvailable } from './frame.js';
import { BACKENDS, backendByScheme, backendByType } from './registry.js';

export interface RemoteTierConfig {
  readonly type: string;
  readonly url: string;
  /** The URL without credentials, with the namespace: how logs and stats name the tier. */
  readonly label: string;
  readonly readOnly: boolean;
  readonly namespace: string;
  readonly connectTimeoutMs: number;
  readonly operationTimeoutMs: number;
  /** `ignore`: count a failed write and go on; `disable`: also stop using the tier until the daemon restarts. */
  readonly writeErrors: 'ignore' | 'disable';
  readonly compression: Codec;
  /** What the backend's parseOptions returned. */
  readonly options: unknown;
  readonly module: BackendModule;
}

const COMMON_KEYS = [
  'type',
  'url',
  'read_only',
  'namespace',
  'connect_timeout_ms',
  'operation_timeout_ms',
  'write_errors',
  'compression',
] as const;

export const REMOTE_DEFAULTS = {
  connectTimeoutMs: 100,
  operationTimeoutMs: 5000,
  compression: 'brotli' as Codec,
};

type Table = Readonly<Record<string, unknown>>;

function bool(v: unknown): boolean | undefined {
  if (typeof v === 'boolean') return v;
  if (v === 'true' || v === '1') return true;
  if (v === 'false' || v === '0') return false;
  return undefined;
}

function millis(v: unknown): number | undefined {
  const n = typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v;
  return typeof n === 'number' && Number.isSafeInteger(n) && n > 0 && n <= 3_600_000 ? n : undefined;
}

function schemeOf(url: string): string | undefined {
  return /^([a-z][a-z0-9+.-]*):/i.exec(url)?.[1]?.toLowerCase();
}

/** One tier from its table; `where` names it in messages (`config.toml, [[cache.remote]] #2`). */
export function parseTier(table: Table, where: string, forceReadOnly = false): RemoteTierConfig {
  const url = table.url;
  if (url === undefined) throw KILN_ERR_CONFIG_MISSING('url', where);
  if (typeof url !== 'string' || !schemeOf(url))
    throw KILN_ERR_CONFIG_INVALID('url', where, 'a URL such as "redis://127.0.0.1:6379"');
  const types = BACKENDS.map((b) => b.type).join(', ');
  let module: BackendModule | undefined;
  if (table.type !== undefined) {
    module = typeof table.type === 'string' ? backendByType(table.type) : undefined;
    if (!module) throw KILN_ERR_CONFIG_INVALID('type', where, `one of ${types}`);
  } else {
    module = backendByScheme(schemeOf(url)!);
    if (!module)
      throw KILN_ERR_CONFIG_INVALID(
        'url',
        where,
        `a URL whose scheme names a backend (${BACKENDS.flatMap((b) => b.schemes).join(', ')}), or a "type" (${types})`,
      );
  }
  const known = [...COMMON_KEYS, ...module.keys];
  for (const key of Object.keys(table))
    if (!known.includes(key)) throw KILN_ERR_CONFIG_UNKNOWN_KEY(key, where, known, didYouMean(key, known));

  const readOnly = table.read_only === undefined ? false : bool(table.read_only);
  if (readOnly === undefined) throw KILN_ERR_CONFIG_INVALID('read_only', where, 'true or false');
  const namespace = table.namespace ?? '';
  if (typeof namespace !== 'string' || !/^[A-Za-z0-9._-]{0,64}$/.test(namespace))
    throw KILN_ERR_CONFIG_INVALID('namespace', where, 'up to 64 letters, digits, ".", "_" or "-"');
  const timeout = (key: string, fallback: number): number => {
    if (table[key] === undefined) return fallback;
    const n = millis(table[key]);
    if (n === undefined)
      throw KILN_ERR_CONFIG_INVALID(key, where, 'a whole number of milliseconds (1 to 3600000)');
    return n;
  };
  const writeErrors = table.write_errors ?? 'ignore';
  if (writeErrors !== 'ignore' && writeErrors !== 'disable')
    throw KILN_ERR_CONFIG_INVALID('write_errors', where, '"ignore" or "disable"');
  const compression = table.compression ?? REMOTE_DEFAULTS.compression;
  if (!(CODECS as readonly unknown[]).includes(compression))
    throw KILN_ERR_CONFIG_INVALID('compression', where, `one of ${CODECS.join(', ')}`);
  if (!codecAvailable(compression as Codec))
    throw KILN_ERR_CONFIG_INVALID(
      'compression',
      where,
      `a codec this Node has (zstd needs Node 22.15 or later; this is ${process.version})`,
    );
  const own: Record<string, unknown> = {};
  for (const key of module.keys) if (table[key] !== undefined) own[key] = table[key];
  const options = module.parseOptions(url, own, where);
  const described = module.describe(url);
  return Object.freeze({
    type: module.type,
    url,
    label: namespace ? `${described} (namespace ${namespace})` : described,
    readOnly: forceReadOnly || readOnly,
    namespace,
    connectTimeoutMs: timeout('connect_timeout_ms', REMOTE_DEFAULTS.connectTimeoutMs),
    operationTimeoutMs: timeout('operation_timeout_ms', REMOTE_DEFAULTS.operationTimeoutMs),
    writeErrors,
    compression: compression as Codec,
    options,
    module,
  });
}

/**
 * KILN_REMOTE_STORAGE: tiers separated by spaces, each a URL with `|key=value` attributes, as
 * ccache's remote_storage: `redis://cache:6379|read_only=true|namespace=ci http://dav/kiln`.
 */
export function parseRemoteEnv(value: string, name: string, forceReadOnly: boolean): RemoteTierConfig[] {
  return value
    .split(/\s+/)
    .filter(Boolean)
    .map((spec, i) => {
      const [url, ...attrs] = spec.split('|');
      const table: Record<string, unknown> = { url };
      for (const attr of attrs) {
        const eq = attr.indexOf('=');
        if (eq <= 0)
          throw KILN_ERR_CONFIG_INVALID(
            `tier ${i + 1}`,
            `environment variable ${name}`,
            'URL|key=value|key=value, tiers separated by spaces',
          );
        table[attr.slice(0, eq)] = decodeURIComponent(attr.slice(eq + 1));
      }
      return parseTier(table, `environment variable ${name} (tier ${i + 1})`, forceReadOnly);
    });
}

/** The `remote` list of the `[cache]` table. */
export function parseRemoteTables(value: unknown, file: string, forceReadOnly: boolean): RemoteTierConfig[] {
  if (!Array.isArray(value))
    throw KILN_ERR_CONFIG_INVALID('cache.remote', file, 'a list of [[cache.remote]] tables');
  return value.map((table, i) => {
    const where = `${file}, [[cache.remote]] #${i + 1}`;
    if (typeof table !== 'object' || table === null || Array.isArray(table))
      throw KILN_ERR_CONFIG_INVALID('cache.remote', where, 'a table');
    return parseTier(table as Table, where, forceReadOnly);
  });
}
