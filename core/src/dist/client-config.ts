import type { ObjectSchema } from '@kiln/plugins';
import { KILN_ERR_CONFIG_INVALID } from '../errors.js';
import { parseSize } from '../util/size.js';
import { validateTable } from './config-file.js';

/** The client's `[dist]` table (sccache's names). */
export interface DistConfig {
  readonly scheduler_url: string;
  readonly auth: { readonly type: 'token' | 'none'; readonly token?: string };
  /** Send every cacheable compile to the cluster, even ones that are faster locally. */
  readonly force_remote_build: boolean;
  /** Compile locally what the cluster's measured overhead would make slower (see tiny-compiles.ts). */
  readonly keep_tiny_local: boolean;
  /** Bytes of packaged toolchains kept on the client. */
  readonly toolchain_cache_size: number;
  /** Seconds a remote compile may take before the client gives up and compiles locally. */
  readonly job_timeout: number;
  /** Seconds to wait for the scheduler's answer. */
  readonly connect_timeout: number;
}

const schema: ObjectSchema = {
  type: 'object',
  required: ['scheduler_url'],
  properties: {
    scheduler_url: { type: 'string', pattern: '^https?://' },
    auth: {
      type: 'object',
      properties: {
        type: { type: 'string', enum: ['token', 'none'], default: 'none' },
        token: { type: 'string' },
      },
    },
    force_remote_build: { type: 'boolean', default: false },
    keep_tiny_local: { type: 'boolean', default: true },
    toolchain_cache_size: { type: 'string', default: '5G' },
    job_timeout: { type: 'integer', minimum: 1, default: 600 },
    connect_timeout: { type: 'integer', minimum: 1, default: 5 },
  },
};

export function parseDistTable(table: unknown, where: string): DistConfig {
  const raw = validateTable<Omit<DistConfig, 'toolchain_cache_size'> & { toolchain_cache_size: string }>(
    table,
    schema,
    `${where} [dist]`,
  );
  const size = parseSize(raw.toolchain_cache_size);
  if (size === undefined)
    throw KILN_ERR_CONFIG_INVALID('dist.toolchain_cache_size', where, 'a size such as "5G"');
  if (raw.auth.type === 'token' && !raw.auth.token)
    throw KILN_ERR_CONFIG_INVALID('dist.auth.token', where, 'a token for type = "token"');
  return Object.freeze({
    ...raw,
    scheduler_url: raw.scheduler_url.replace(/\/+$/, ''),
    toolchain_cache_size: size,
  });
}
