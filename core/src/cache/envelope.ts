/**
 * The on-disk container for cache entries and manifests: magic, kind, a JSON header, the payload
 * blobs, and a SHA-256 of everything before it. Reading checks length and checksum, so a
 * truncated or bit-flipped file is detected and treated as a miss, never returned.
 *
 *   "KLNE" u8:kind u32:headerLength header(JSON) u32:blobCount (u32:length blob)* sha256(32)
 */
import { createHash } from 'node:crypto';

const MAGIC = Buffer.from('KLNE', 'latin1');
const TRAILER = 32;

export const EnvelopeKind = { RESULT: 1, MANIFEST: 2 } as const;
export type EnvelopeKind = (typeof EnvelopeKind)[keyof typeof EnvelopeKind];

export interface Envelope<H> {
  readonly header: H;
  readonly blobs: readonly Buffer[];
}

export function seal<H>(kind: EnvelopeKind, header: H, blobs: readonly Buffer[]): Buffer {
  const json = Buffer.from(JSON.stringify(header));
  const head = Buffer.alloc(4 + 1 + 4);
  MAGIC.copy(head, 0);
  head.writeUInt8(kind, 4);
  head.writeUInt32LE(json.length, 5);
  const parts: Buffer[] = [head, json];
  const count = Buffer.alloc(4);
  count.writeUInt32LE(blobs.length);
  parts.push(count);
  for (const blob of blobs) {
    const len = Buffer.alloc(4);
    len.writeUInt32LE(blob.length);
    parts.push(len, blob);
  }
  const hash = createHash('sha256');
  for (const p of parts) hash.update(p);
  parts.push(hash.digest());
  return Buffer.concat(parts);
}

/** Returns undefined for anything that is not a complete, intact envelope of `kind`. */
export function open<H>(kind: EnvelopeKind, data: Buffer): Envelope<H> | undefined {
  if (data.length < 9 + 4 + TRAILER || !data.subarray(0, 4).equals(MAGIC) || data.readUInt8(4) !== kind) {
    return undefined;
  }
  const body = data.subarray(0, data.length - TRAILER);
  const expected = data.subarray(data.length - TRAILER);
  if (!createHash('sha256').update(body).digest().equals(expected)) return undefined;
  let offset = 5;
  const jsonLength = body.readUInt32LE(offset);
  offset += 4;
  if (offset + jsonLength + 4 > body.length) return undefined;
  let header: H;
  try {
    header = JSON.parse(body.subarray(offset, offset + jsonLength).toString()) as H;
  } catch {
    return undefined;
  }
  offset += jsonLength;
  const count = body.readUInt32LE(offset);
  offset += 4;
  const blobs: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    if (offset + 4 > body.length) return undefined;
    const len = body.readUInt32LE(offset);
    offset += 4;
    if (offset + len > body.length) return undefined;
    blobs.push(body.subarray(offset, offset + len));
    offset += len;
  }
  return offset === body.length ? { header, blobs } : undefined;
}
