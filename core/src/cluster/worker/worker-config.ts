import os from 'node:os';
import path from 'node:path';
import { DEFAULT_JOB_LIMITS, type JobLimits, type ObjectSchema } from '@kiln/plugins';
import { KILN_ERR_CONFIG_INVALID } from '../../errors.js';
import { parseSize } from '../../util/size.js';
import { loadTomlConfig } from '../config-file.js';
import { fromSccacheWorker } from '../sccache-names.js';
import { checkBearerToken, readSecretFile, relativeTo, secretFrom } from '../secrets.js';
import { type Fingerprint, pinSetting } from '../tls/pinned-agent.js';
import { type ServerTlsConfig, serverTlsFiles, serverTlsSchema } from '../tls/server-tls.js';

/** worker.toml; names follow sccache-dist's server config. */
export interface WorkerConfig {
  /** Stable id the worker token names; defaults to the host name. */
  readonly id: string;
  /** Where the worker listens, host:port. */
  readonly public_addr: string;
  /** The URL clients use to reach the worker (default: https://public_addr). */
  readonly public_url: string;
  readonly scheduler_url: string;
  /** Plain HTTP for this worker and to the scheduler: only on a network you trust. */
  readonly insecure: boolean;
  /** The operator's certificate; without one a certificate is made and kept in cache_dir/tls. */
  readonly tls: ServerTlsConfig | undefined;
  /** Trust exactly the scheduler certificate with this fingerprint (`kiln-dist tls fingerprint`). */
  readonly scheduler_cert_sha256: Fingerprint | undefined;
  /** PEM CA certificates that sign the scheduler's certificate (instead of the system's). */
  readonly scheduler_ca_file: string | undefined;
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
  /** Each resolver's own config table, by the name it is listed under in `resolvers`. */
  readonly resolver_config: Readonly<Record<string, unknown>>;
  readonly job_timeout: number;
  /** What each job may use, enforced by the sandbox (`[limits]`). */
  readonly limits: JobLimits;
  /**
   * The token inline, or the file holding it (read again at every heartbeat, so that
   * `kiln-dist auth rotate-worker-token` needs no restart), or KILN_DIST_WORKER_TOKEN.
   */
  readonly scheduler_auth: {
    readonly type: 'jwt_token';
    readonly token?: string;
    readonly token_file?: string;
  };
  readonly log_level: 'error' | 'warn' | 'info' | 'debug';
  /** Append the JSON log here instead of writing it to stdout. */
  readonly log_file: string | undefined;
  /** The bearer token /metrics wants; without one /metrics is off. */
  readonly metrics_token: string | undefined;
  /** sccache-dist names read as kiln's (logged at start). */
  readonly migrated?: readonly string[];
}

const schema: ObjectSchema = {
  type: 'object',
  required: ['scheduler_url', 'scheduler_auth'],
  properties: {
    id: {
      type: 'string',
      pattern: '^[A-Za-z0-9_.:-]{1,100}$',
      format: 'at most 100 letters, digits, and _ . : -',
    },
    public_addr: { type: 'string', default: '127.0.0.1:10601' },
    public_url: { type: 'string', pattern: '^https?://', format: 'a URL that starts with https://' },
    scheduler_url: { type: 'string', pattern: '^https?://', format: 'a URL that starts with https://' },
    insecure: { type: 'boolean', default: false },
    tls: serverTlsSchema,
    scheduler_cert_sha256: { type: 'string' },
    scheduler_ca_file: { type: 'string' },
    cache_dir: { type: 'string' },
    toolchain_cache_size: { type: 'size', default: '10G' },
    max_toolchain_size: { type: 'size', default: '2G' },
    max_job_input_size: { type: 'size', default: '256M' },
    request_timeout: { type: 'integer', minimum: 1, maximum: 86_400, default: 600 },
    max_jobs: { type: 'integer', minimum: 1, maximum: 4096 },
    host_triple: {
      type: 'string',
      pattern: '^[a-z0-9_]+(-[a-z0-9_.]+){1,4}$',
      format: 'a host triple such as x86_64-unknown-linux-gnu',
    },
    sandbox: { type: 'string', default: 'bwrap' },
    // Validated by the sandbox plugin's own schema.
    sandbox_config: { type: 'object', properties: {}, additionalProperties: true },
    resolvers: { type: 'array', items: { type: 'string' }, default: [] },
    // Each table is validated by its plugin's own schema.
    resolver_config: { type: 'object', properties: {}, additionalProperties: true },
    job_timeout: { type: 'integer', minimum: 1, default: 600 },
    limits: {
      type: 'object',
      properties: {
        processes: { type: 'integer', minimum: 1, maximum: 1_000_000 },
        memory: { type: 'size' },
        tmp_disk: { type: 'size' },
        output_size: { type: 'size' },
      },
    },
    scheduler_auth: {
      type: 'object',
      required: ['type'],
      properties: {
        type: { type: 'string', enum: ['jwt_token'] },
        token: { type: 'string' },
        token_file: { type: 'string' },
      },
    },
    log_level: { type: 'string', enum: ['error', 'warn', 'info', 'debug'], default: 'warn' },
    log_file: { type: 'string' },
    metrics_token: { type: 'string' },
    metrics_token_file: { type: 'string' },
  },
};

interface RawLimits {
  processes?: number;
  memory?: string | number;
  tmp_disk?: string | number;
  output_size?: string | number;
}

type SizeKey = 'toolchain_cache_size' | 'max_toolchain_size' | 'max_job_input_size';
type Raw = Omit<WorkerConfig, SizeKey | 'limits' | 'metrics_token'> &
  Record<SizeKey, string | number> & {
    limits: RawLimits;
    metrics_token?: string;
    metrics_token_file?: string;
  };

/**
 * A root worker starts jobs as other uids, which must reach the toolchains: not under /root (0700),
 * else the jobs run without their own uid and so without a process limit.
 */
function defaultCacheDir(): string {
  if (process.getuid?.() === 0) return '/var/cache/kiln-worker';
  return path.join(os.homedir(), '.cache', 'kiln-worker');
}

export function loadWorkerConfig(file: string, env: NodeJS.ProcessEnv = process.env): WorkerConfig {
  const migrated: string[] = [];
  const raw = loadTomlConfig<Raw>(file, schema, fromSccacheWorker, migrated);
  return Object.freeze({ ...finishWorkerConfig(file, raw, env), migrated });
}

/** The worker token now: KILN_DIST_WORKER_TOKEN, else the token file (read afresh), else inline. */
export function currentWorkerToken(config: WorkerConfig, env: NodeJS.ProcessEnv = process.env): string {
  const fromEnv = env.KILN_DIST_WORKER_TOKEN?.trim();
  if (fromEnv) return fromEnv;
  const { token, token_file } = config.scheduler_auth;
  return token_file ? readSecretFile(token_file, 'scheduler_auth.token') : token!;
}

function finishWorkerConfig(file: string, raw: Raw, env: NodeJS.ProcessEnv): WorkerConfig {
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
  const auth = raw.scheduler_auth;
  if (auth.token !== undefined && auth.token_file !== undefined)
    throw KILN_ERR_CONFIG_INVALID('scheduler_auth.token', file, 'either token or token_file, not both');
  if (!auth.token && !auth.token_file && !env.KILN_DIST_WORKER_TOKEN)
    throw KILN_ERR_CONFIG_INVALID(
      'scheduler_auth.token_file',
      file,
      "the file with this worker's token (`kiln-dist auth generate-jwt-hs256-worker-token`), or token, or KILN_DIST_WORKER_TOKEN",
    );
  // An insecure worker serves plain HTTP unless it has a [tls] table.
  const plain = raw.insecure && !serverTlsFiles(file, raw.tls);
  const publicUrl = raw.public_url ?? `${plain ? 'http' : 'https'}://${raw.public_addr}`;
  if (!raw.insecure) {
    for (const [key, url] of [
      ['scheduler_url', raw.scheduler_url],
      ['public_url', publicUrl],
    ] as const) {
      if (url.startsWith('http://'))
        throw KILN_ERR_CONFIG_INVALID(key, file, 'an https:// URL; plain http needs insecure = true');
    }
  }
  const pin = pinSetting(raw.scheduler_cert_sha256, 'scheduler_cert_sha256', file);
  const tls = serverTlsFiles(file, raw.tls);
  const { metrics_token_file, ...rest } = raw;
  const metricsToken = secretFrom({
    key: 'metrics_token',
    inline: raw.metrics_token,
    file: metrics_token_file,
    envName: 'KILN_DIST_METRICS_TOKEN',
    env,
    where: file,
  });
  if (metricsToken !== undefined) checkBearerToken('metrics_token', metricsToken, file);
  return Object.freeze({
    ...rest,
    metrics_token: metricsToken,
    limits,
    resolver_config: raw.resolver_config ?? {},
    id: raw.id ?? os.hostname(),
    public_url: publicUrl,
    tls,
    scheduler_cert_sha256: pin,
    scheduler_ca_file: raw.scheduler_ca_file && relativeTo(file, raw.scheduler_ca_file),
    log_file: raw.log_file === undefined ? undefined : relativeTo(file, raw.log_file),
    scheduler_auth: {
      type: auth.type,
      ...(auth.token !== undefined ? { token: auth.token } : {}),
      ...(auth.token_file !== undefined ? { token_file: relativeTo(file, auth.token_file) } : {}),
    },
    cache_dir: raw.cache_dir ?? defaultCacheDir(),
    toolchain_cache_size: size('toolchain_cache_size'),
    max_toolchain_size: size('max_toolchain_size'),
    max_job_input_size: size('max_job_input_size'),
    max_jobs: raw.max_jobs ?? os.availableParallelism(),
    host_triple: raw.host_triple,
  });
}
