import { createHash, randomBytes } from 'node:crypto';
import zlib from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { crc32, crc32Js, EnvelopeKind, open, seal } from '../src/cache/envelope.js';

describe('envelope', () => {
  const sealed = seal(EnvelopeKind.RESULT, { exitCode: 0, files: ['object'] }, [
    Buffer.from('out'),
    Buffer.alloc(0),
    Buffer.from('obj'),
  ]);

  it('opens what it sealed', () => {
    const env = open<{ files: string[] }>(EnvelopeKind.RESULT, sealed);
    expect(env?.header.files).toEqual(['object']);
    expect(env?.blobs.map(String)).toEqual(['out', '', 'obj']);
  });

  it('refuses every truncation, any flipped byte and the wrong kind', () => {
    for (let n = 0; n < sealed.length; n++)
      expect(open(EnvelopeKind.RESULT, sealed.subarray(0, n))).toBeUndefined();
    for (let i = 0; i < sealed.length; i++) {
      const bad = Buffer.from(sealed);
      bad[i] = bad[i]! ^ 0x40;
      expect(open(EnvelopeKind.RESULT, bad)).toBeUndefined();
    }
    expect(open(EnvelopeKind.MANIFEST, sealed)).toBeUndefined();
  });

  it('checks with CRC-32 (the zlib polynomial) in a KLNC envelope', () => {
    expect(sealed.subarray(0, 4).toString('latin1')).toBe('KLNC');
    const body = sealed.subarray(0, sealed.length - 4);
    expect(sealed.readUInt32LE(body.length)).toBe(zlib.crc32(body));
  });

  it('reads the SHA-256 envelopes kiln wrote before, and refuses them damaged', () => {
    // The old layout: the same body under "KLNE" with a SHA-256 trailer.
    const body = Buffer.from(sealed.subarray(0, sealed.length - 4));
    body.write('KLNE', 0, 'latin1');
    const old = Buffer.concat([body, createHash('sha256').update(body).digest()]);
    expect(open<{ files: string[] }>(EnvelopeKind.RESULT, old)?.blobs.map(String)).toEqual([
      'out',
      '',
      'obj',
    ]);
    for (let i = 0; i < old.length; i++) {
      const bad = Buffer.from(old);
      bad[i] = bad[i]! ^ 0x01;
      expect(open(EnvelopeKind.RESULT, bad)).toBeUndefined();
    }
  });
});

describe('crc32', () => {
  it('the JS table (for Node < 20.15) computes what zlib.crc32 does', () => {
    for (const data of [Buffer.alloc(0), Buffer.from('123456789'), randomBytes(100_000)])
      expect(crc32Js(data)).toBe(zlib.crc32(data));
    expect(crc32Js(Buffer.from('123456789'))).toBe(0xcbf43926); // the standard check value
    expect(crc32).toBe(zlib.crc32);
  });
});
