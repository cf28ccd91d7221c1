/**
 * S3 and S3-compatible object stores (AWS, MinIO, Ceph RGW, R2, s3rver) as a remote cache tier.
 * `s3://BUCKET/PREFIX`; an entry is the object `PREFIX/<namespace>/<kind>/<key>`.
 *
 * The official client rather than a hand-written SigV4: signing is the easy part, the credential
 * chain (environment, shared files and profiles, SSO, assume-role, web identity, container and
 * instance metadata, with refresh) is what hand-written clients get wrong. Its cost is ~120 ms of
 * import, paid once by the long-lived daemon and only when an s3 tier is configured.
 */
import http from 'node:http';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import type { S3Client, S3ClientConfig } from '@aws-sdk/client-s3';
import {
  KILN_ERR_CONFIG_INVALID,
  KILN_ERR_CONFIG_MISSING,
  KILN_ERR_STORAGE_CREDENTIALS,
  KILN_ERR_STORAGE_DENIED,
  KILN_ERR_STORAGE_NO_CONTAINER,
  KILN_ERR_STORAGE_REMOTE,
  type KilnError,
} from '../../errors.js';
import type { BackendContext, BackendModule, EntryName, RemoteBackend } from './backend.js';
import { entryPath } from './backend.js';
import { bucketUrl, optBool, optEnvName, optString, withoutCredentials } from './options.js';

export interface S3Options {
  readonly bucket: string;
  /** Without leading or trailing slashes; '' for the bucket's root. */
  readonly prefix: string;
  /** An S3-compatible endpoint (http or https); AWS's own for the region when absent. */
  readonly endpoint?: string;
  readonly region?: string;
  /** `http://endpoint/bucket/key` rather than `http://bucket.endpoint/key` (MinIO, Ceph, s3rver). */
  readonly pathStyle: boolean;
  /** Names of the environment variables that hold the keys, when the config gives them. */
  readonly keyEnv?: { readonly id: string; readonly secret: string; readonly token?: string };
  /** A profile of the AWS shared files, instead of AWS_PROFILE. */
  readonly profile?: string;
  /** Unsigned requests, for a public-read bucket. */
  readonly noCredentials: boolean;
}

const KEYS = [
  'endpoint',
  'region',
  'path_style',
  'access_key_id_env',
  'secret_access_key_env',
  'session_token_env',
  'profile',
  'no_credentials',
] as const;

interface AwsCredentialIdentity {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly sessionToken?: string;
}
type AwsCredentialIdentityProvider = Extract<NonNullable<S3ClientConfig['credentials']>, () => unknown>;

interface SdkError {
  readonly name?: string;
  readonly message?: string;
  readonly $metadata?: { readonly httpStatusCode?: number };
}

function parseOptions(url: string, table: Readonly<Record<string, unknown>>, where: string): S3Options {
  const expectedUrl = 's3://BUCKET or s3://BUCKET/PREFIX, without credentials, port or query';
  const { name: bucket, prefix } = bucketUrl(url, 's3:', where, expectedUrl);
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$/.test(bucket)) {
    throw KILN_ERR_CONFIG_INVALID('url', where, `${expectedUrl} (a bucket name: letters, digits, ".", "-")`);
  }

  const endpoint = optString(table, 'endpoint', where, 'an http:// or https:// URL');
  if (endpoint !== undefined) {
    let e: URL | undefined;
    try {
      e = new URL(endpoint);
    } catch {
      e = undefined;
    }
    if (!e || (e.protocol !== 'http:' && e.protocol !== 'https:') || e.username || e.password) {
      throw KILN_ERR_CONFIG_INVALID('endpoint', where, 'an http:// or https:// URL without credentials');
    }
  }
  const region = optString(table, 'region', where, 'a region name such as "eu-west-1"');
  const id = optEnvName(table, 'access_key_id_env', where);
  const secret = optEnvName(table, 'secret_access_key_env', where);
  const token = optEnvName(table, 'session_token_env', where);
  if (id !== undefined && secret === undefined) throw KILN_ERR_CONFIG_MISSING('secret_access_key_env', where);
  if (secret !== undefined && id === undefined) throw KILN_ERR_CONFIG_MISSING('access_key_id_env', where);
  if (token !== undefined && id === undefined) throw KILN_ERR_CONFIG_MISSING('access_key_id_env', where);
  const profile = optString(
    table,
    'profile',
    where,
    'the name of a profile in ~/.aws/credentials or ~/.aws/config',
  );
  const noCredentials = optBool(table, 'no_credentials', where);
  if (noCredentials && (id !== undefined || profile !== undefined)) {
    throw KILN_ERR_CONFIG_INVALID(
      'no_credentials',
      where,
      'false when access_key_id_env or profile is given (no_credentials sends unsigned requests)',
    );
  }
  return {
    bucket,
    prefix,
    endpoint,
    region,
    pathStyle: optBool(table, 'path_style', where),
    keyEnv: id !== undefined && secret !== undefined ? { id, secret, token } : undefined,
    profile,
    noCredentials,
  };
}

/**
 * The keys named in the config, then AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (unless a profile is
 * chosen), then the SDK's chain: shared files, SSO, credential_process, web identity, container
 * and instance metadata. Read from `env`, not process.env, so the daemon's view is the one used.
 */
async function credentialsFor(
  options: S3Options,
  env: BackendContext['env'],
  what: string,
): Promise<AwsCredentialIdentity | AwsCredentialIdentityProvider> {
  if (options.noCredentials) return { accessKeyId: '', secretAccessKey: '' };
  const fromEnv = (
    id: string,
    secret: string,
    token: string | undefined,
  ): AwsCredentialIdentity | undefined => {
    const accessKeyId = env[id];
    const secretAccessKey = env[secret];
    if (!accessKeyId || !secretAccessKey) return undefined;
    const sessionToken = token ? env[token] || undefined : undefined;
    return { accessKeyId, secretAccessKey, sessionToken };
  };
  if (options.keyEnv) {
    const { id, secret, token } = options.keyEnv;
    const found = fromEnv(id, secret, token);
    if (found) return found;
    const error = KILN_ERR_STORAGE_CREDENTIALS(
      what,
      `access_key_id_env names ${id} and secret_access_key_env names ${secret}: set both in the daemon's environment`,
    );
    return () => Promise.reject(error);
  }
  const profile = options.profile ?? (env.AWS_PROFILE || undefined);
  if (profile === undefined) {
    const found = fromEnv('AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN');
    if (found) return found;
  }
  const home = env.HOME || os.homedir();
  const { defaultProvider } = await import('@aws-sdk/credential-provider-node');
  const chain = defaultProvider({
    profile,
    filepath: env.AWS_SHARED_CREDENTIALS_FILE || path.join(home, '.aws', 'credentials'),
    configFilepath: env.AWS_CONFIG_FILE || path.join(home, '.aws', 'config'),
  });
  return async (props) => {
    try {
      return await chain(props);
    } catch (e) {
      throw withCause(
        KILN_ERR_STORAGE_CREDENTIALS(
          what,
          `${message(e)} (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, ~/.aws/credentials, or no_credentials = true for a public bucket)`,
        ),
        e,
      );
    }
  };
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function withCause(error: KilnError, cause: unknown): KilnError {
  return Object.assign(error, { cause });
}

const DENIED = new Set([
  'AccessDenied',
  'InvalidAccessKeyId',
  'SignatureDoesNotMatch',
  'ExpiredToken',
  'InvalidToken',
  'TokenRefreshRequired',
]);

/** Reads a response body to the end, or gives up when the signal aborts. */
async function readBody(body: unknown, expected: number | undefined, signal: AbortSignal): Promise<Buffer> {
  const stream = body as AsyncIterable<Uint8Array> & { destroy?: (e?: Error) => void };
  const onAbort = () => stream.destroy?.(new Error('aborted'));
  signal.addEventListener('abort', onAbort, { once: true });
  try {
    const chunks: Buffer[] = [];
    for await (const chunk of stream)
      chunks.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
    signal.throwIfAborted();
    const data = Buffer.concat(chunks);
    if (expected !== undefined && data.length !== expected) {
      throw new Error(`the body has ${data.length} bytes, Content-Length said ${expected}`);
    }
    return data;
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
}

type Sdk = typeof import('@aws-sdk/client-s3');

class S3Backend implements RemoteBackend {
  /** Set once the bucket is known to exist: a HEAD 404 cannot tell a missing key from a missing bucket. */
  #bucketSeen = false;

  constructor(
    private readonly sdk: Sdk,
    private readonly client: S3Client,
    private readonly options: S3Options,
    private readonly what: string,
  ) {}

  async get(name: EntryName, signal: AbortSignal): Promise<Buffer | undefined> {
    try {
      const res = await this.client.send(new this.sdk.GetObjectCommand(this.#object(name)), {
        abortSignal: signal,
      });
      this.#bucketSeen = true;
      return await readBody(res.Body, res.ContentLength, signal);
    } catch (e) {
      return this.#miss(e, 'get', signal);
    }
  }

  async put(name: EntryName, data: Buffer, signal: AbortSignal): Promise<void> {
    try {
      await this.client.send(
        new this.sdk.PutObjectCommand({ ...this.#object(name), Body: data, ContentLength: data.length }),
        { abortSignal: signal },
      );
      this.#bucketSeen = true;
    } catch (e) {
      throw await this.#failure(e, 'put', signal);
    }
  }

  async exists(name: EntryName, signal: AbortSignal): Promise<boolean> {
    try {
      await this.client.send(new this.sdk.HeadObjectCommand(this.#object(name)), { abortSignal: signal });
      this.#bucketSeen = true;
      return true;
    } catch (e) {
      await this.#miss(e, 'exists', signal);
      return false;
    }
  }

  async remove(name: EntryName, signal: AbortSignal): Promise<void> {
    try {
      // S3 answers 204 for an absent key too.
      await this.client.send(new this.sdk.DeleteObjectCommand(this.#object(name)), { abortSignal: signal });
    } catch (e) {
      throw await this.#failure(e, 'remove', signal);
    }
  }

  async close(): Promise<void> {
    this.client.destroy();
  }

  #object(name: EntryName): { Bucket: string; Key: string } {
    const key = entryPath(name);
    return { Bucket: this.options.bucket, Key: this.options.prefix ? `${this.options.prefix}/${key}` : key };
  }

  /** Undefined for a missing key (in a bucket that exists); throws for anything else. */
  async #miss(e: unknown, op: string, signal: AbortSignal): Promise<undefined> {
    const err = e as SdkError;
    if (!signal.aborted && err.name === 'NoSuchKey') return undefined;
    if (!signal.aborted && err.$metadata?.httpStatusCode === 404 && err.name !== 'NoSuchBucket') {
      await this.#checkBucket(signal);
      return undefined;
    }
    throw await this.#failure(e, op, signal);
  }

  async #checkBucket(signal: AbortSignal): Promise<void> {
    if (this.#bucketSeen) return;
    try {
      await this.client.send(new this.sdk.HeadBucketCommand({ Bucket: this.options.bucket }), {
        abortSignal: signal,
      });
    } catch (e) {
      const err = e as SdkError;
      // 403: the bucket is there, these credentials may not list it.
      if (err.$metadata?.httpStatusCode !== 403) throw await this.#failure(e, 'head bucket', signal, true);
    }
    this.#bucketSeen = true;
  }

  async #failure(e: unknown, op: string, signal: AbortSignal, headBucket = false): Promise<KilnError> {
    const err = e as SdkError;
    const status = err.$metadata?.httpStatusCode;
    if (signal.aborted) {
      return withCause(
        KILN_ERR_STORAGE_REMOTE(`${op} on ${this.what}`, `gave up: ${message(signal.reason)}`),
        e,
      );
    }
    if ((e as { code?: string }).code === 'KILN_ERR_STORAGE_CREDENTIALS') return e as KilnError;
    if (err.name === 'NoSuchBucket' || (headBucket && status === 404)) {
      return withCause(
        KILN_ERR_STORAGE_NO_CONTAINER(
          this.what,
          `create the bucket, or fix the bucket name in the url (s3://${this.options.bucket}${this.options.prefix ? `/${this.options.prefix}` : ''})`,
        ),
        e,
      );
    }
    if (status === 404 && !headBucket) {
      await this.#checkBucket(signal);
    }
    if (status === 401 || status === 403 || DENIED.has(err.name ?? '')) {
      return withCause(KILN_ERR_STORAGE_DENIED(this.what, `${err.name}: ${err.message} (HTTP ${status})`), e);
    }
    const detail = status ? `${err.name}: ${err.message} (HTTP ${status})` : `${err.name}: ${err.message}`;
    return withCause(KILN_ERR_STORAGE_REMOTE(`${op} on ${this.what}`, detail), e);
  }
}

async function create(options: S3Options, context: BackendContext): Promise<RemoteBackend> {
  const what = `the S3 bucket "${options.bucket}"${options.endpoint ? ` at ${options.endpoint}` : ''}`;
  const sdk = await import('@aws-sdk/client-s3');
  const credentials = await credentialsFor(options, context.env, what);
  // Idle connections close after 4 s, before most servers drop them: with one attempt per
  // operation, a request must rarely meet a kept-alive connection closing under it.
  const agent = { keepAlive: true, maxSockets: 64, timeout: 4000 };
  const client = new sdk.S3Client({
    endpoint: options.endpoint,
    region: options.region ?? (context.env.AWS_REGION || context.env.AWS_DEFAULT_REGION || 'us-east-1'),
    forcePathStyle: options.pathStyle,
    credentials,
    // Unsigned requests for a public bucket: the SDK has no switch for it, a signer that signs nothing is the way.
    ...(options.noCredentials ? { signer: { sign: async <R>(request: R) => request } } : {}),
    // The tier retries, with its own backoff and deadline; the SDK must not outlive the signal.
    maxAttempts: 1,
    followRegionRedirects: true,
    // Many S3-compatible servers reject the flexible-checksum headers; the tier checksums entries itself.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    requestHandler: {
      connectionTimeout: context.connectTimeoutMs,
      httpAgent: new http.Agent(agent),
      httpsAgent: new https.Agent(agent),
    },
  });
  context.log.debug(`remote cache: ${what}, prefix "${options.prefix}"`);
  return new S3Backend(sdk, client, options, what);
}

export const s3Backend: BackendModule<S3Options> = {
  type: 's3',
  schemes: ['s3'],
  keys: KEYS,
  parseOptions,
  // parseOptions refused credentials, a port and a query: what is left is the bucket and prefix.
  describe: (url) => withoutCredentials(url, 's3://(invalid url)'),
  create,
};
