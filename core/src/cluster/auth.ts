/**
 * Tokens between the parts of a cluster (sccache-dist's scheme):
 * - worker → scheduler: an HS256 JWT whose subject is the worker id, signed with the scheduler's
 *   secret key. Identity is the id, not the IP, so workers behind NAT work.
 * - scheduler → client → worker: a per-job token, HS256 with a key the worker made up at start and
 *   sent in its heartbeat; bound to the job id and the worker, valid for minutes.
 * - client → scheduler: a shared bearer token or a JWT checked against a JWKS or a public key.
 * kiln's own HS256 tokens use node:crypto (./hs256-jwt.ts); jose is loaded only for client JWTs.
 */
import { createPublicKey, createSecretKey, type KeyObject, randomBytes, timingSafeEqual } from 'node:crypto';
import type * as Jose from 'jose';
import { KILN_ERR_AUTH_INVALID } from '../errors.js';
import { signHs256, verifyHs256 } from './hs256-jwt.js';

const WORKER_AUDIENCE = 'kiln-scheduler';
const JOB_ISSUER = 'kiln-scheduler';

/** A fresh 256-bit key, base64url: `kiln-dist auth generate-jwt-hs256-key`. */
export function generateHs256Key(): string {
  return randomBytes(32).toString('base64url');
}

export function secretKeyFrom(text: string): KeyObject {
  const bytes = Buffer.from(text, 'base64url');
  if (bytes.length < 32)
    throw KILN_ERR_AUTH_INVALID('the HS256 secret key must be at least 32 bytes (base64url)');
  return createSecretKey(bytes);
}

/** How long a worker token is valid unless `--days` says otherwise. */
export const WORKER_TOKEN_DAYS = 90;

export async function workerToken(
  secret: KeyObject,
  workerId: string,
  days = WORKER_TOKEN_DAYS,
): Promise<string> {
  return signHs256(secret, {
    sub: workerId,
    aud: WORKER_AUDIENCE,
    exp: Math.floor(Date.now() / 1000) + Math.round(days * 86_400),
  });
}

/**
 * The worker id a worker token names; undefined when it is forged, malformed, for another
 * audience, expired, or has no expiry (tokens made before kiln put one in: issue new ones).
 */
export async function verifyWorkerToken(secret: KeyObject, token: string): Promise<string | undefined> {
  const claims = verifyHs256(secret, token, { audience: WORKER_AUDIENCE });
  const sub = claims?.sub;
  return typeof sub === 'string' && sub && typeof claims?.exp === 'number' ? sub : undefined;
}

/** The expiry (seconds since the epoch) a token claims, unverified: for warnings on the worker. */
export function claimedExpiry(token: string): number | undefined {
  try {
    const payload = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8'));
    return typeof payload?.exp === 'number' ? payload.exp : undefined;
  } catch {
    return undefined;
  }
}

/**
 * What a job token lets its holder do on one worker. A "job" token runs one job (and uploads the
 * toolchain it was allocated for, once); a "probe" token only checks that the worker accepts the
 * scheduler's tokens (`kiln --dist-test-conn`): it runs nothing and holds no slot.
 */
export interface JobGrant {
  readonly jobId: string;
  readonly scope: 'job' | 'probe';
  /** The toolchain digest the job was allocated for (job tokens only). */
  readonly toolchain?: string;
  /** Expiry, seconds since the epoch. */
  readonly exp: number;
}

export async function jobToken(
  workerKey: KeyObject,
  workerId: string,
  grant: { jobId: string; scope: JobGrant['scope']; toolchain?: string },
  lifetimeS: number,
) {
  return signHs256(workerKey, {
    iss: JOB_ISSUER,
    sub: grant.jobId,
    aud: `kiln-worker:${workerId}`,
    exp: Math.floor(Date.now() / 1000) + lifetimeS,
    scope: grant.scope,
    ...(grant.toolchain ? { tc: grant.toolchain } : {}),
  });
}

/** What a job token grants; undefined when it is expired, forged, for another worker, or has no scope. */
export async function verifyJobToken(
  workerKey: KeyObject,
  workerId: string,
  token: string,
): Promise<JobGrant | undefined> {
  const c = verifyHs256(workerKey, token, { audience: `kiln-worker:${workerId}`, issuer: JOB_ISSUER });
  if (!c || typeof c.sub !== 'string' || !c.sub || typeof c.exp !== 'number') return undefined;
  // Tokens from before scopes existed ran anything: they are not accepted.
  if (c.scope !== 'job' && c.scope !== 'probe') return undefined;
  if (c.scope === 'job' && typeof c.tc !== 'string') return undefined;
  return {
    jobId: c.sub,
    scope: c.scope,
    exp: c.exp,
    ...(typeof c.tc === 'string' ? { toolchain: c.tc } : {}),
  };
}

export interface ClientAuthConfig {
  readonly type: 'token' | 'jwt' | 'none';
  readonly token?: string;
  readonly jwks_url?: string;
  readonly key?: string;
  readonly issuer?: string;
  readonly audience?: string;
}

/** Checks the bearer credential of a client request: resolves true when it may use the cluster. */
export type ClientVerifier = (bearer: string | undefined) => Promise<boolean>;

export function clientVerifier(config: ClientAuthConfig): ClientVerifier {
  switch (config.type) {
    case 'none':
      return async () => true;
    case 'token': {
      const expected = Buffer.from(config.token ?? '');
      if (expected.length === 0) throw KILN_ERR_AUTH_INVALID('[client_auth] type = "token" needs a token');
      return async (bearer) => {
        const got = Buffer.from(bearer ?? '');
        return got.length === expected.length && timingSafeEqual(got, expected);
      };
    }
    case 'jwt':
      return jwtVerifier(config);
  }
}

function pemPublicKey(pem: string | undefined): KeyObject {
  if (!pem) throw KILN_ERR_AUTH_INVALID('[client_auth] type = "jwt" needs jwks_url or key');
  try {
    return createPublicKey(pem);
  } catch (err) {
    throw KILN_ERR_AUTH_INVALID(`[client_auth] key is not a PEM public key: ${(err as Error).message}`);
  }
}

/**
 * Client JWTs (asymmetric keys, JWKS) are checked by jose, imported on the first use: a scheduler
 * with token auth never loads it. The key is checked at once, so a bad PEM stops startup.
 */
function jwtVerifier(config: ClientAuthConfig): ClientVerifier {
  // A JWKS is fetched by jose when the first client JWT arrives.
  const publicKey = config.jwks_url ? undefined : pemPublicKey(config.key);
  const options: Jose.JWTVerifyOptions = {
    // A client JWT without an expiry would be valid forever once leaked.
    requiredClaims: ['exp'],
    ...(config.issuer ? { issuer: config.issuer } : {}),
    ...(config.audience ? { audience: config.audience } : {}),
  };
  let verify: Promise<(bearer: string) => Promise<unknown>> | undefined;
  const load = async () => {
    const jose = await import('jose');
    const key = config.jwks_url ? jose.createRemoteJWKSet(new URL(config.jwks_url)) : publicKey!;
    // Overloads differ for a key and a key getter; both are valid here.
    return (bearer: string) => jose.jwtVerify(bearer, key as KeyObject, options);
  };
  return async (bearer) => {
    if (!bearer) return false;
    verify ??= load();
    try {
      await (await verify)(bearer);
      return true;
    } catch {
      return false;
    }
  };
}

export function bearerOf(header: string | undefined): string | undefined {
  const m = header ? /^Bearer\s+(\S+)$/i.exec(header) : null;
  return m ? m[1] : undefined;
}

/**
 * The client credential of a browser request: a bearer token, or the password of HTTP Basic auth
 * (the user name is ignored), which is what a browser can send after asking for it.
 */
export function browserCredentialOf(header: string | undefined): string | undefined {
  const bearer = bearerOf(header);
  if (bearer) return bearer;
  const m = header ? /^Basic\s+([A-Za-z0-9+/=]+)$/i.exec(header) : null;
  if (!m) return undefined;
  const text = Buffer.from(m[1]!, 'base64').toString('utf8');
  const colon = text.indexOf(':');
  return colon >= 0 && colon < text.length - 1 ? text.slice(colon + 1) : undefined;
}
