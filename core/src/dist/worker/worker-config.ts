import os from 'node:os';
import path from 'node:path';
import { DEFAULT_JOB_LIMITS, type JobLimits, type ObjectSchema } from '@kiln/plugins';
import { KILN_ERR_CONFIG_INVALID } from '../../errors.js';
import { parseSize } from '../../util/size.js';
import { loadTomlConfig } from '../config-file.js';

/** worker.toml; names follow sccache-dist's server config. */
export interface WorkerConfig {
  /** Stable id the worker token names; defaults to the host name. */
  readonly id: string;
  /** Where the worker listens, host:port. */
  readonly public_addr: string;
  /** The URL clients use to reach the worker (default: http://public_addr). */
  readonly public_url: string;
  readonly scheduler_url: string;
  readonly cache_dir: string;
  /** Bytes of toolchains (archives and unpacked trees) kept; least recently used go first. */
  readonly toolchain_cache_size: number;
  /** Largest toolchain archive accepted. */
  readonly max_toolchain_size: number;
  /** Largest job request (its header and input files, e.g. a preprocessed source). */
  readonly max_job_input_size: number;
  /** Seconds a client may take to send one whole request (a toolchain upload included). */
  readonly request_timeout: number;
  readonly max_jobs: number;
  /** Override the detected host triple (e.g. a 32-bit userland on a 64-bit kernel). */
  readonly host_triple: string | undefined;
  /** Sandbox plugin: "bwrap", a package name or a path. */
  readonly sandbox: string;
  readonly sandbox_config: Readonly<Record<string, unknown>>;
  /** Extra toolchain resolver plugins besides the built-in "archive". */
  readonly resolvers: readonly string[];
  readonly job_timeout: number;
  /** What each job may use, enforced by the sandbox (`[limits]`). */
  readonly limits: JobLimits;
  readonly scheduler_auth: { readonly type: 'jwt_token'; readonly token: string };
  readonly log_level: 'error' | 'warn' | 'info' | 'debug';
}

const schema: ObjectSchema = {
  type: 'object',
  required: ['scheduler_url', 'scheduler_auth'],
  properties: {
    id: { type: 'string', pattern: '^[A-Za-z0-9_.:-]{1,100}$' },
    public_addr: { type: 'string', default: '127.0.0.1:10601' },
    public_url: { type: 'string', pattern: '^https?://' },
    scheduler_url: { type: 'string', pattern: '^https?://' },
    cache_dir: { type: 'string' },
    toolchain_cache_size: { type: 'string', default: '10G' },
    max_toolchain_size: { type: 'string', default: '2G' },
    max_job_input_size: { type: 'string', default: '256M' },
    request_timeout: { type: 'integer', minimum: 1, maximum: 86_400, default: 600 },
    max_jobs: { type: 'integer', minimum: 1, maximum: 4096 },
    host_triple: { type: 'string', pattern: '^[a-z0-9_]+(-[a-z0-9_.]+){1,4}$' },
    sandbox: { type: 'string', default: 'bwrap' },
    // Validated by the sandbox plugin's own schema.
    sandbox_config: { type: 'object', properties: {}, additionalProperties: true },
    resolvers: { type: 'array', items: { type: 'string' }, default: [] },
    job_timeout: { type: 'integer', minimum: 1, default: 600 },
    limits: {
      type: 'object',
      properties: {
        processes: { type: 'integer', minimum: 1, maximum: 1_000_000 },
        memory: { type: 'string' },
        tmp_disk: { type: 'string' },
        output_size: { type: 'string' },
      },
    },
    scheduler_auth: {
      type: 'object',
      required: ['type', 'token'],
      properties: { type: { type: 'string', enum: ['jwt_token'] }, token: { type: 'string' } },
    },
    log_level: { type: 'string', enum: ['error', 'warn', 'info', 'debug'], default: 'warn' },
  },
};

interface RawLimits {
  processes?: number;
  memory?: string;
  tmp_disk?: string;
  output_size?: string;
}

type SizeKey = 'toolchain_cache_size' | 'max_toolchain_size' | 'max_job_input_size';
type Raw = Omit<WorkerConfig, SizeKey | 'limits'> & Record<SizeKey, string> & { limits: RawLimits };

/**
 * A root worker starts jobs as other uids, which must reach the toolchains: not under /root (0700),
 * else the jobs run without their own uid and so without a process limit.
 */
function defaultCacheDir(): string {
  if (process.getuid?.() === 0) return '/var/cache/kiln-worker';
  return path.join(os.homedir(), '.cache', 'kiln-worker');
}

export function loadWorkerConfig(file: string): WorkerConfig {
  return finishWorkerConfig(file, loadTomlConfig<Raw>(file, schema));
}

function finishWorkerConfig(file: string, raw: Raw): WorkerConfig {
  const size = (key: SizeKey) => {
    const n = parseSize(raw[key]);
    if (n === undefined) throw KILN_ERR_CONFIG_INVALID(key, file, 'a size such as "10G"');
    return n;
  };
  const limit = (key: 'memory' | 'tmp_disk' | 'output_size', fallback: number) => {
    const value = raw.limits[key];
    if (value === undefined) return fallback;
    const n = parseSize(value);
    if (!n) throw KILN_ERR_CONFIG_INVALID(`limits.${key}`, file, 'a size above zero such as "4G"');
    return n;
  };
  const limits: JobLimits = Object.freeze({
    processes: raw.limits.processes ?? DEFAULT_JOB_LIMITS.processes,
    memoryBytes: limit('memory', DEFAULT_JOB_LIMITS.memoryBytes),
    tmpDiskBytes: limit('tmp_disk', DEFAULT_JOB_LIMITS.tmpDiskBytes),
    outputBytes: limit('output_size', DEFAULT_JOB_LIMITS.outputBytes),
  });
  return Object.freeze({
    ...raw,
    limits,
    id: raw.id ?? os.hostname(),
    public_url: raw.public_url ?? `http://${raw.public_addr}`,
    cache_dir: raw.cache_dir ?? defaultCacheDir(),
    toolchain_cache_size: size('toolchain_cache_size'),
    max_toolchain_size: size('max_toolchain_size'),
    max_job_input_size: size('max_job_input_size'),
    max_jobs: raw.max_jobs ?? os.availableParallelism(),
    host_triple: raw.host_triple,
  });
}
