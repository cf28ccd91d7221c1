import fs from 'node:fs';
import path from 'node:path';
import type { ObjectSchema } from '@kiln/plugins';
import { KILN_ERR_CONFIG_INVALID, KILN_ERR_TLS_CERT } from '../errors.js';
import { parseSize } from '../util/size.js';
import { validateTable } from './config-file.js';
import { checkBearerToken, relativeTo, secretFrom } from './secrets.js';
import { type Fingerprint, pinSetting } from './tls/pinned-agent.js';

/** The client's `[dist]` table (sccache's names). */
export interface DistConfig {
  readonly scheduler_url: string;
  /** The token is read from auth.token, auth.token_file or KILN_DIST_CLIENT_TOKEN. */
  readonly auth: { readonly type: 'token' | 'none'; readonly token?: string };
  /** Allow plain http:// to the scheduler and to workers: only on a network you trust. */
  readonly insecure: boolean;
  /** Trust exactly the scheduler certificate with this fingerprint (`kiln-dist tls fingerprint`). */
  readonly scheduler_cert_sha256: Fingerprint | undefined;
  /** PEM CA certificates (the file's content) trusted for the scheduler instead of the system's. */
  readonly scheduler_ca: string | undefined;
  /** Send every cacheable compile to the cluster, even ones that are faster locally. */
  readonly force_remote_build: boolean;
  /** Compile locally what the cluster's measured overhead would make slower (see tiny-compiles.ts). */
  readonly keep_tiny_local: boolean;
  /** Bytes of packaged toolchains kept on the client. */
  readonly toolchain_cache_size: number;
  /** Where packaged toolchains are kept (sccache-dist's client `cache_dir`); default `<cache_dir>/toolchains`. */
  readonly cache_dir?: string | undefined;
  /** Seconds a remote compile may take before the client gives up and compiles locally. */
  readonly job_timeout: number;
  /** Seconds to wait for the scheduler's answer. */
  readonly connect_timeout: number;
  /** How this client is named to the scheduler (its fair share, its status page); default the host name. */
  readonly client_name?: string | undefined;
  /**
   * Toolchain resolver plugins tried before the built-in "archive" (gcc and clang packed by kiln),
   * in order: short names, package names or paths relative to the config file.
   */
  readonly resolvers: readonly string[];
  /** Each resolver's own config table, by the name it is listed under in `resolvers`. */
  readonly resolver_config: Readonly<Record<string, unknown>>;
  /**
   * sccache-dist's `[[dist.toolchains]]` (`type = "path_override"` / `"no_dist"`): handed to the
   * path-override resolver plugin, which checks them (see cluster-root.ts).
   */
  readonly toolchains: readonly Readonly<Record<string, unknown>>[];
}

const schema: ObjectSchema = {
  type: 'object',
  required: ['scheduler_url'],
  properties: {
    scheduler_url: { type: 'string', pattern: '^https?://', format: 'a URL that starts with https://' },
    auth: {
      type: 'object',
      properties: {
        type: { type: 'string', enum: ['token', 'none'], default: 'none' },
        token: { type: 'string' },
        token_file: { type: 'string' },
      },
    },
    insecure: { type: 'boolean', default: false },
    scheduler_cert_sha256: { type: 'string' },
    scheduler_ca_file: { type: 'string' },
    force_remote_build: { type: 'boolean', default: false },
    keep_tiny_local: { type: 'boolean', default: true },
    toolchain_cache_size: { type: 'size', default: '5G' },
    cache_dir: { type: 'string', pattern: '^/', format: 'an absolute path' },
    job_timeout: { type: 'integer', minimum: 1, default: 600 },
    connect_timeout: { type: 'integer', minimum: 1, default: 5 },
    client_name: {
      type: 'string',
      pattern: '^[A-Za-z0-9._@:/-]{1,100}$',
      format: 'up to 100 letters, digits and ._@:/-',
    },
    resolvers: { type: 'array', items: { type: 'string' }, default: [] },
    // Each table is validated by its plugin's own schema.
    resolver_config: { type: 'object', properties: {}, additionalProperties: true },
    // Each entry is validated by the path-override resolver's own schema.
    toolchains: { type: 'array', items: { type: 'object', properties: {}, additionalProperties: true } },
  },
};

type Raw = Omit<DistConfig, 'toolchain_cache_size' | 'auth' | 'scheduler_ca'> & {
  toolchain_cache_size: string | number;
  auth: DistConfig['auth'] & { token_file?: string };
  scheduler_ca_file?: string;
};

export function parseDistTable(
  table: unknown,
  where: string,
  env: NodeJS.ProcessEnv = process.env,
): DistConfig {
  const { scheduler_ca_file, ...raw } = validateTable<Raw>(table, schema, `${where} [dist]`);
  const size = parseSize(raw.toolchain_cache_size);
  if (size === undefined)
    throw KILN_ERR_CONFIG_INVALID('dist.toolchain_cache_size', where, 'a size such as "5G"');
  const { token_file, ...auth } = raw.auth;
  const token = secretFrom({
    key: 'dist.auth.token',
    inline: auth.token,
    file: token_file,
    envName: 'KILN_DIST_CLIENT_TOKEN',
    env,
    where,
  });
  if (auth.type === 'token' && !token)
    throw KILN_ERR_CONFIG_INVALID('dist.auth.token', where, 'a token (or token_file) for type = "token"');
  if (auth.type === 'token' && token) checkBearerToken('dist.auth.token', token, where);
  if (raw.scheduler_url.startsWith('http://') && !raw.insecure)
    throw KILN_ERR_CONFIG_INVALID(
      'dist.scheduler_url',
      where,
      'an https:// URL; plain http needs insecure = true',
    );
  const pin = pinSetting(raw.scheduler_cert_sha256, 'dist.scheduler_cert_sha256', where);
  let ca: string | undefined;
  if (scheduler_ca_file !== undefined) {
    const file = relativeTo(where, scheduler_ca_file);
    try {
      ca = fs.readFileSync(file, 'utf8');
    } catch (err) {
      throw KILN_ERR_TLS_CERT(
        file,
        `cannot read dist.scheduler_ca_file: ${(err as NodeJS.ErrnoException).code}`,
      );
    }
  }
  return Object.freeze({
    ...raw,
    auth: { type: auth.type, ...(token ? { token } : {}) },
    scheduler_url: raw.scheduler_url.replace(/\/+$/, ''),
    scheduler_cert_sha256: pin,
    scheduler_ca: ca,
    toolchain_cache_size: size,
    // An absent table is {} after validation; undefined only when validation left it out.
    resolver_config: raw.resolver_config ?? {},
    toolchains: raw.toolchains ?? [],
  });
}

/** Where the client keeps packaged toolchains: `[dist] cache_dir`, else `<cache_dir>/toolchains`. */
export function toolchainDir(cacheDir: string, dist: DistConfig | undefined): string {
  return dist?.cache_dir ?? path.join(cacheDir, 'toolchains');
}
