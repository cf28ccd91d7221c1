/**
 * Tokens between the parts of a cluster (sccache-dist's scheme, with jose):
 * - worker → scheduler: an HS256 JWT whose subject is the worker id, signed with the scheduler's
 *   secret key. Identity is the id, not the IP, so workers behind NAT work.
 * - scheduler → client → worker: a per-job token, HS256 with a key the worker made up at start and
 *   sent in its heartbeat; bound to the job id and the worker, valid for minutes.
 * - client → scheduler: a shared bearer token or a JWT checked against a JWKS or a public key.
 */
import { createPublicKey, createSecretKey, type KeyObject, randomBytes, timingSafeEqual } from 'node:crypto';
import * as jose from 'jose';
import { KILN_ERR_AUTH_INVALID } from '../errors.js';

const WORKER_AUDIENCE = 'kiln-scheduler';
const JOB_ISSUER = 'kiln-scheduler';

/** A fresh 256-bit key, base64url: `kiln-dist auth generate-jwt-hs256-key`. */
export function generateHs256Key(): string {
  return randomBytes(32).toString('base64url');
}

export function secretKeyFrom(text: string): KeyObject {
  const bytes = Buffer.from(text, 'base64url');
  if (bytes.length < 32) throw KILN_ERR_AUTH_INVALID('the HS256 secret key must be at least 32 bytes (base64url)');
  return createSecretKey(bytes);
}

export async function workerToken(secret: KeyObject, workerId: string): Promise<string> {
  return new jose.SignJWT({})
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject(workerId)
    .setAudience(WORKER_AUDIENCE)
    .setIssuedAt()
    .sign(secret);
}

/** The worker id a worker token names; undefined when it is forged, malformed or for another audience. */
export async function verifyWorkerToken(secret: KeyObject, token: string): Promise<string | undefined> {
  try {
    const { payload } = await jose.jwtVerify(token, secret, { audience: WORKER_AUDIENCE, algorithms: ['HS256'] });
    return typeof payload.sub === 'string' && payload.sub ? payload.sub : undefined;
  } catch {
    return undefined;
  }
}

export async function jobToken(workerKey: KeyObject, workerId: string, jobId: string, lifetimeS: number) {
  return new jose.SignJWT({})
    .setProtectedHeader({ alg: 'HS256' })
    .setIssuer(JOB_ISSUER)
    .setSubject(jobId)
    .setAudience(`kiln-worker:${workerId}`)
    .setExpirationTime(Math.floor(Date.now() / 1000) + lifetimeS)
    .sign(workerKey);
}

/** The job id a job token is bound to; undefined when it is expired, forged or for another worker. */
export async function verifyJobToken(workerKey: KeyObject, workerId: string, token: string) {
  try {
    const { payload } = await jose.jwtVerify(token, workerKey, {
      issuer: JOB_ISSUER,
      audience: `kiln-worker:${workerId}`,
      algorithms: ['HS256'],
    });
    return typeof payload.sub === 'string' ? payload.sub : undefined;
  } catch {
    return undefined;
  }
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
    case 'jwt': {
      let key: jose.JWTVerifyGetKey | KeyObject;
      if (config.jwks_url) key = jose.createRemoteJWKSet(new URL(config.jwks_url));
      else if (config.key) {
        try {
          key = createPublicKey(config.key);
        } catch (err) {
          throw KILN_ERR_AUTH_INVALID(`[client_auth] key is not a PEM public key: ${(err as Error).message}`);
        }
      } else throw KILN_ERR_AUTH_INVALID('[client_auth] type = "jwt" needs jwks_url or key');
      const options: jose.JWTVerifyOptions = {
        ...(config.issuer ? { issuer: config.issuer } : {}),
        ...(config.audience ? { audience: config.audience } : {}),
      };
      return async (bearer) => {
        if (!bearer) return false;
        try {
          // Overloads differ for a key and a key getter; both are valid here.
          await jose.jwtVerify(bearer, key as KeyObject, options);
          return true;
        } catch {
          return false;
        }
      };
    }
  }
}

export function bearerOf(header: string | undefined): string | undefined {
  const m = header ? /^Bearer\s+(\S+)$/i.exec(header) : null;
  return m ? m[1] : undefined;
}
