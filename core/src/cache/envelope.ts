/**
 * The on-disk container for cache entries and manifests: magic, kind, a JSON header, the payload
 * blobs, and a checksum of everything before it. Reading checks length and checksum, so a
 * truncated or bit-flipped file is detected and treated as a miss, never returned.
 *
 *   "KLNC" u8:kind u32:headerLength header(JSON) u32:blobCount (u32:length blob)* crc32(4)
 *   "KLNE" …the same… sha256(32)       (written by kiln before 0.2; still read)
 *
 * The checksum guards against damage (a torn write, a bad disk), not against an attacker: the
 * local cache is private. CRC-32 checks a 250 KB object in 45 µs where SHA-256 took 150 µs of
 * every hit; zlib.crc32 is there from Node 20.15 and 22.2, and a table in JS serves older ones.
 */
import { createHash } from 'node:crypto';
import zlib from 'node:zlib';

const CRC_MAGIC = Buffer.from('KLNC', 'latin1');
const SHA_MAGIC = Buffer.from('KLNE', 'latin1');
const CRC_TRAILER = 4;
const SHA_TRAILER = 32;

let table: Uint32Array | undefined;
/** CRC-32 (the zlib/PNG polynomial), bit-identical to zlib.crc32, for a Node without it. */
export function crc32Js(data: Buffer, crc = 0): number {
  if (!table) {
    table = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      table[n] = c >>> 0;
    }
  }
  let c = ~crc >>> 0;
  for (let i = 0; i < data.length; i++) c = table[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}

const native = (zlib as { crc32?: (data: Buffer, value?: number) => number }).crc32;
export const crc32: (data: Buffer, value?: number) => number = native ?? crc32Js;

export const EnvelopeKind = { RESULT: 1, MANIFEST: 2 } as const;
export type EnvelopeKind = (typeof EnvelopeKind)[keyof typeof EnvelopeKind];

export interface Envelope<H> {
  readonly header: H;
  readonly blobs: readonly Buffer[];
}

export function seal<H>(kind: EnvelopeKind, header: H, blobs: readonly Buffer[]): Buffer {
  const json = Buffer.from(JSON.stringify(header));
  const head = Buffer.alloc(4 + 1 + 4);
  CRC_MAGIC.copy(head, 0);
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
  const sealed = Buffer.concat([...parts, Buffer.alloc(CRC_TRAILER)]);
  const body = sealed.subarray(0, sealed.length - CRC_TRAILER);
  sealed.writeUInt32LE(crc32(body), body.length);
  return sealed;
}

/** Returns undefined for anything that is not a complete, intact envelope of `kind`. */
export function open<H>(kind: EnvelopeKind, data: Buffer): Envelope<H> | undefined {
  const magic = data.subarray(0, 4);
  const trailer = magic.equals(CRC_MAGIC) ? CRC_TRAILER : magic.equals(SHA_MAGIC) ? SHA_TRAILER : 0;
  if (trailer === 0 || data.length < 9 + 4 + trailer || data.readUInt8(4) !== kind) return undefined;
  const body = data.subarray(0, data.length - trailer);
  const intact =
    trailer === CRC_TRAILER
      ? crc32(body) === data.readUInt32LE(body.length)
      : createHash('sha256').update(body).digest().equals(data.subarray(body.length));
  if (!intact) return undefined;
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
