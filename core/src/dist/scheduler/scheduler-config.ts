import type { ObjectSchema } from '@kiln/plugins';
import { KILN_ERR_CONFIG_INVALID } from '../../errors.js';
import type { ClientAuthConfig } from '../auth.js';
import { loadTomlConfig } from '../config-file.js';

/** scheduler.toml; names follow sccache-dist's scheduler config. */
export interface SchedulerConfig {
  /** Where the scheduler listens, host:port. */
  readonly public_addr: string;
  readonly client_auth: ClientAuthConfig;
  readonly worker_auth: {
    readonly type: 'jwt_hs256';
    readonly secret_key: string;
    /** Also require a worker's requests to come from the host in its advertised URL. */
    readonly check_worker_ip: boolean;
  };
  /** Seconds without a heartbeat before a worker leaves its pool. */
  readonly worker_timeout: number;
  /** Seconds a job token stays valid. */
  readonly job_token_lifetime: number;
  readonly log_level: 'error' | 'warn' | 'info' | 'debug';
}

export const schedulerSchema: ObjectSchema = {
  type: 'object',
  properties: {
    public_addr: { type: 'string', default: '127.0.0.1:10600' },
    client_auth: {
      type: 'object',
      required: ['type'],
      properties: {
        type: { type: 'string', enum: ['token', 'jwt', 'none'] },
        token: { type: 'string' },
        jwks_url: { type: 'string', pattern: '^https?://' },
        key: { type: 'string' },
        issuer: { type: 'string' },
        audience: { type: 'string' },
      },
    },
    worker_auth: {
      type: 'object',
      required: ['type', 'secret_key'],
      properties: {
        type: { type: 'string', enum: ['jwt_hs256'] },
        secret_key: { type: 'string' },
        check_worker_ip: { type: 'boolean', default: false },
      },
    },
    worker_timeout: { type: 'integer', minimum: 1, default: 30 },
    job_token_lifetime: { type: 'integer', minimum: 10, default: 900 },
    log_level: { type: 'string', enum: ['error', 'warn', 'info', 'debug'], default: 'warn' },
  },
  required: ['client_auth', 'worker_auth'],
};

export function loadSchedulerConfig(file: string): SchedulerConfig {
  const config = loadTomlConfig<SchedulerConfig>(file, schedulerSchema);
  const auth = config.client_auth;
  if (auth.type === 'token' && !auth.token)
    throw KILN_ERR_CONFIG_INVALID('client_auth.token', file, 'a token for type = "token"');
  if (auth.type === 'jwt' && !auth.jwks_url && !auth.key)
    throw KILN_ERR_CONFIG_INVALID('client_auth', file, 'jwks_url or key for type = "jwt"');
  return config;
}
