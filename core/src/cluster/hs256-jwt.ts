/**
 * Compact HS256 JWTs with node:crypto, for the tokens kiln mints and checks itself (worker → scheduler,
 * per-job tokens). jose's HMAC goes through WebCrypto: an async thread-pool round trip and a key
 * import per call, a third of the scheduler's CPU per allocation in `bench/scheduler.mjs`, and ~6 MB
 * of modules. Tokens are byte-compatible with jose's (`{"alg":"HS256"}` header, no `typ`), so tokens
 * made by earlier versions keep working. Client JWTs (JWKS, public keys) still go through jose.
 */
import { createHmac, type KeyObject, timingSafeEqual } from 'node:crypto';

/** The registered claims kiln uses; all times are seconds since the epoch. */
export interface Hs256Claims {
  readonly sub?: string;
  readonly aud?: string;
  readonly iss?: string;
  readonly iat?: number;
  readonly exp?: number;
  /** kiln's private claims (a job token's scope and toolchain). */
  readonly [claim: string]: string | number | undefined;
}

export interface Hs256Expectations {
  readonly audience: string;
  readonly issuer?: string;
}

const HEADER = Buffer.from('{"alg":"HS256"}').toString('base64url');
const BASE64URL = /^[A-Za-z0-9_-]*$/;

const epochSeconds = () => Math.floor(Date.now() / 1000);

function mac(key: KeyObject, signingInput: string): Buffer {
  return createHmac('sha256', key).update(signingInput).digest();
}

/** Signs `claims` (with `iat` set to now unless given). */
export function signHs256(key: KeyObject, claims: Hs256Claims): string {
  const payload = Buffer.from(JSON.stringify({ iat: epochSeconds(), ...claims })).toString('base64url');
  const input = `${HEADER}.${payload}`;
  return `${input}.${mac(key, input).toString('base64url')}`;
}

function parseJsonObject(part: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
    return value !== null && typeof value === 'object' && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

const optionalNumber = (v: unknown) => v === undefined || typeof v === 'number';

/** The checks jose's jwtVerify makes for these claims: expired at `exp`, not before `nbf`. */
function claimsValid(claims: Record<string, unknown>, expect: Hs256Expectations): boolean {
  const now = epochSeconds();
  const { aud, iss, exp, nbf, iat } = claims;
  if (!optionalNumber(exp) || !optionalNumber(nbf) || !optionalNumber(iat)) return false;
  if (typeof exp === 'number' && exp <= now) return false;
  if (typeof nbf === 'number' && nbf > now) return false;
  const audiences = Array.isArray(aud) ? aud : [aud];
  if (!audiences.includes(expect.audience)) return false;
  return expect.issuer === undefined || iss === expect.issuer;
}

/**
 * The claims of a token signed with `key` for `expect.audience` (and issuer); undefined when it is
 * malformed, forged, expired, not yet valid, for another audience, or uses anything but plain HS256.
 */
export function verifyHs256(
  key: KeyObject,
  token: string,
  expect: Hs256Expectations,
): Record<string, unknown> | undefined {
  const parts = token.split('.');
  if (parts.length !== 3 || !parts.every((p) => BASE64URL.test(p))) return undefined;
  const [header, payload, signature] = parts as [string, string, string];
  const given = Buffer.from(signature, 'base64url');
  const expected = mac(key, `${header}.${payload}`);
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return undefined;
  // `crit` and `b64` change how a token is read; kiln never sets them, so such a token is not kiln's.
  const h = parseJsonObject(header);
  if (!h || h.alg !== 'HS256' || 'crit' in h || 'b64' in h) return undefined;
  const claims = parseJsonObject(payload);
  return claims && claimsValid(claims, expect) ? claims : undefined;
}
