import os from 'node:os';
import path from 'node:path';
import type { ObjectSchema } from '@kiln/plugins';
import { KILN_ERR_CONFIG_INVALID } from '../../errors.js';
import type { ClientAuthConfig } from '../auth.js';
import { loadTomlConfig } from '../config-file.js';
import { fromSccacheScheduler } from '../sccache-names.js';
import { checkBearerToken, relativeTo, secretFrom } from '../secrets.js';
import { type ServerTlsConfig, serverTlsFiles, serverTlsSchema } from '../tls/server-tls.js';

/** scheduler.toml; names follow sccache-dist's scheduler config. */
export interface SchedulerConfig {
  /** Where the scheduler listens, host:port. */
  readonly public_addr: string;
  /** Plain HTTP, and http:// URLs for JWKS and workers: only on a network you trust. */
  readonly insecure: boolean;
  /** Where the generated TLS certificate is kept. */
  readonly state_dir: string;
  readonly tls: ServerTlsConfig | undefined;
  readonly client_auth: ClientAuthConfig;
  readonly worker_auth: {
    readonly type: 'jwt_hs256';
    /** Read from secret_key, secret_key_file or KILN_DIST_SECRET_KEY. */
    readonly secret_key: string;
    /** Also require a worker's requests to come from the host in its advertised URL. */
    readonly check_worker_ip: boolean;
  };
  /** Seconds without a heartbeat before a worker leaves its pool. */
  readonly worker_timeout: number;
  /** Seconds a job token stays valid. */
  readonly job_token_lifetime: number;
  readonly log_level: 'error' | 'warn' | 'info' | 'debug';
  /** Append the JSON log here instead of writing it to stdout. */
  readonly log_file: string | undefined;
  /** sccache-dist names read as kiln's (logged at start). */
  readonly migrated: readonly string[];
}

export const schedulerSchema: ObjectSchema = {
  type: 'object',
  properties: {
    public_addr: { type: 'string', default: '127.0.0.1:10600' },
    insecure: { type: 'boolean', default: false },
    state_dir: { type: 'string' },
    tls: serverTlsSchema,
    client_auth: {
      type: 'object',
      required: ['type'],
      properties: {
        type: { type: 'string', enum: ['token', 'jwt', 'none'] },
        token: { type: 'string' },
        token_file: { type: 'string' },
        jwks_url: { type: 'string', pattern: '^https?://', format: 'a URL that starts with https://' },
        key: { type: 'string' },
        issuer: { type: 'string' },
        audience: { type: 'string' },
      },
    },
    worker_auth: {
      type: 'object',
      required: ['type'],
      properties: {
        type: { type: 'string', enum: ['jwt_hs256'] },
        secret_key: { type: 'string' },
        secret_key_file: { type: 'string' },
        check_worker_ip: { type: 'boolean', default: false },
      },
    },
    worker_timeout: { type: 'integer', minimum: 1, default: 30 },
    job_token_lifetime: { type: 'integer', minimum: 10, default: 900 },
    log_level: { type: 'string', enum: ['error', 'warn', 'info', 'debug'], default: 'warn' },
    log_file: { type: 'string' },
  },
  required: ['client_auth', 'worker_auth'],
};

type Raw = Omit<SchedulerConfig, 'state_dir' | 'client_auth' | 'worker_auth' | 'migrated'> & {
  state_dir?: string;
  client_auth: ClientAuthConfig & { token_file?: string };
  worker_auth: SchedulerConfig['worker_auth'] & { secret_key?: string; secret_key_file?: string };
};

function defaultStateDir(env: NodeJS.ProcessEnv): string {
  const base = env.XDG_STATE_HOME || path.join(os.homedir(), '.local', 'state');
  return path.join(base, 'kiln-scheduler');
}

/**
 * Reads and checks scheduler.toml; the secrets come from the file, the files it names, or
 * KILN_DIST_SECRET_KEY / KILN_DIST_CLIENT_TOKEN. Paths in it are relative to its directory.
 */
export function loadSchedulerConfig(file: string, env: NodeJS.ProcessEnv = process.env): SchedulerConfig {
  const migrated: string[] = [];
  const raw = loadTomlConfig<Raw>(file, schedulerSchema, fromSccacheScheduler, migrated);
  const { token_file, ...clientAuth } = raw.client_auth;
  const token = secretFrom({
    key: 'client_auth.token',
    inline: clientAuth.token,
    file: token_file,
    envName: 'KILN_DIST_CLIENT_TOKEN',
    env,
    where: file,
  });
  if (clientAuth.type === 'token' && !token)
    throw KILN_ERR_CONFIG_INVALID('client_auth.token', file, 'a token (or token_file) for type = "token"');
  if (clientAuth.type === 'token' && token) checkBearerToken('client_auth.token', token, file);
  if (clientAuth.type === 'jwt' && !clientAuth.jwks_url && !clientAuth.key)
    throw KILN_ERR_CONFIG_INVALID('client_auth', file, 'jwks_url or key for type = "jwt"');
  if (clientAuth.jwks_url?.startsWith('http://') && !raw.insecure)
    throw KILN_ERR_CONFIG_INVALID(
      'client_auth.jwks_url',
      file,
      'an https:// URL (a JWKS fetched over plain http lets anyone on the way mint client tokens); or set insecure = true',
    );
  const { secret_key_file, ...workerAuth } = raw.worker_auth;
  const secret = secretFrom({
    key: 'worker_auth.secret_key',
    inline: workerAuth.secret_key,
    file: secret_key_file,
    envName: 'KILN_DIST_SECRET_KEY',
    env,
    where: file,
  });
  if (!secret)
    throw KILN_ERR_CONFIG_INVALID(
      'worker_auth.secret_key',
      file,
      'secret_key_file (or secret_key, or KILN_DIST_SECRET_KEY) made by `kiln-dist auth generate-jwt-hs256-key`',
    );
  const tls = serverTlsFiles(file, raw.tls);
  return Object.freeze({
    ...raw,
    state_dir: raw.state_dir ? relativeTo(file, raw.state_dir) : defaultStateDir(env),
    log_file: raw.log_file === undefined ? undefined : relativeTo(file, raw.log_file),
    tls,
    client_auth: { ...clientAuth, ...(token ? { token } : {}) },
    worker_auth: { ...workerAuth, secret_key: secret },
    migrated,
  });
}
