import { describe, expect, it } from 'vitest';
import { EnvelopeKind, open, seal } from '../src/cache/envelope.js';

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
});
