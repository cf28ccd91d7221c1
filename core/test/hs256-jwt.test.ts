import { createHmac, createSecretKey, randomBytes } from 'node:crypto';
import * as jose from 'jose';
import { describe, expect, it } from 'vitest';
import { signHs256, verifyHs256 } from '../src/cluster/hs256-jwt.js';

const key = createSecretKey(randomBytes(32));
const nowS = () => Math.floor(Date.now() / 1000);
const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
/** A token with any header and claims and a valid HMAC-SHA256 under `key`. */
function rawToken(header: unknown, claims: unknown): string {
  const input = `${b64(header)}.${b64(claims)}`;
  return `${input}.${createHmac('sha256', key).update(input).digest('base64url')}`;
}

describe('HS256 tokens', () => {
  it('reads tokens jose made, and jose reads ours (tokens from earlier versions keep working)', async () => {
    const fromJose = await new jose.SignJWT({})
      .setProtectedHeader({ alg: 'HS256' })
      .setIssuer('kiln-scheduler')
      .setSubject('job-1')
      .setAudience('kiln-worker:w1')
      .setExpirationTime('1m')
      .sign(key);
    expect(verifyHs256(key, fromJose, { audience: 'kiln-worker:w1', issuer: 'kiln-scheduler' })?.sub).toBe(
      'job-1',
    );
    const ours = signHs256(key, { sub: 'w1', aud: 'kiln-scheduler' });
    expect(ours.split('.')[0]).toBe(fromJose.split('.')[0]);
    const { payload } = await jose.jwtVerify(ours, key, {
      audience: 'kiln-scheduler',
      algorithms: ['HS256'],
    });
    expect(payload).toMatchObject({ sub: 'w1', aud: 'kiln-scheduler' });
  });

  it('refuses forged, expired, not-yet-valid, foreign and malformed tokens', () => {
    const want = { audience: 'a', issuer: 'i' };
    const claims = { sub: 's', aud: 'a', iss: 'i' };
    const good = signHs256(key, { ...claims, exp: nowS() + 60 });
    expect(verifyHs256(key, good, want)?.sub).toBe('s');
    expect(verifyHs256(key, rawToken({ alg: 'HS256' }, { ...claims, aud: ['x', 'a'] }), want)?.sub).toBe('s');
    const [header, , signature] = good.split('.') as [string, string, string];
    const bad = [
      signHs256(createSecretKey(randomBytes(32)), claims),
      signHs256(key, { ...claims, exp: nowS() }),
      signHs256(key, { ...claims, aud: 'b' }),
      signHs256(key, { ...claims, iss: 'other' }),
      rawToken({ alg: 'HS256' }, { ...claims, exp: 'soon' }),
      rawToken({ alg: 'HS256' }, { ...claims, nbf: nowS() + 60 }),
      rawToken({ alg: 'HS256' }, [claims]),
      rawToken({ alg: 'none' }, claims),
      rawToken({ alg: 'HS512' }, claims),
      rawToken({ alg: 'HS256', crit: ['b64'], b64: false }, claims),
      `${header}.${b64({ ...claims, sub: 'x' })}.${signature}`,
      `${good}.extra`,
      `${good.slice(0, -2)}!!`,
      'not a token',
      '',
    ];
    for (const token of bad) expect(verifyHs256(key, token, want), token).toBeUndefined();
  });
});
