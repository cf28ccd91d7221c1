/**
 * Binary bodies for jobs: a JSON header followed by raw blobs, so a multi-megabyte preprocessed
 * file or object is never base64'd. Layout: "KJOB" | u32 BE header length | header | blobs, where
 * the header lists each blob's size in order.
 */

import { Readable } from 'node:stream';
import type { LimitKind } from '@kiln/plugins';
import { KILN_ERR_DIST_BAD_REQUEST } from '../errors.js';

const MAGIC = Buffer.from('KJOB');
const MAX_HEADER = 1024 * 1024;

export const JOB_CONTENT_TYPE = 'application/x-kiln-job';

/** The frame's start: magic, header length and the header listing the blob sizes. */
function frameHead(header: object, sizes: readonly number[]): Buffer {
  const json = Buffer.from(JSON.stringify({ ...header, blobSizes: sizes }));
  const len = Buffer.alloc(4);
  len.writeUInt32BE(json.length);
  return Buffer.concat([MAGIC, len, json]);
}

export function encodeFrame(header: object, blobs: readonly Uint8Array[]): Buffer {
  return Buffer.concat([
    frameHead(
      header,
      blobs.map((b) => b.length),
    ),
    ...blobs,
  ]);
}

/** A blob known by its size and read as a stream (a job's output file). */
export interface StreamedBlob {
  readonly size: number;
  stream(): Readable;
}

/**
 * The same frame as `encodeFrame`, produced as a stream: blobs that are streams are never held
 * whole. Fails (and so cuts the answer) when a stream gives another number of bytes than its size.
 * `progress` is called as each piece is handed on.
 */
export function frameStream(
  header: object,
  blobs: readonly (Uint8Array | StreamedBlob)[],
  progress: () => void = () => {},
): Readable {
  const head = frameHead(
    header,
    blobs.map((b) => (b instanceof Uint8Array ? b.length : b.size)),
  );
  async function* parts() {
    yield head;
    for (const b of blobs) {
      if (b instanceof Uint8Array) {
        if (b.length) yield b;
        progress();
        continue;
      }
      let n = 0;
      for await (const chunk of b.stream()) {
        n += (chunk as Buffer).length;
        progress();
        yield chunk as Buffer;
      }
      if (n !== b.size) throw new Error(`a blob gave ${n} bytes, not ${b.size}`);
    }
  }
  return Readable.from(parts(), { objectMode: false });
}

/** Splits a frame; throws a 400 KilnError on anything malformed. */
export function decodeFrame<H>(body: Buffer): { header: H; blobs: Buffer[] } {
  if (body.length < 8 || !body.subarray(0, 4).equals(MAGIC))
    throw KILN_ERR_DIST_BAD_REQUEST('not a kiln job frame');
  const len = body.readUInt32BE(4);
  if (len > MAX_HEADER || 8 + len > body.length)
    throw KILN_ERR_DIST_BAD_REQUEST('frame header length out of range');
  let header: H & { blobSizes?: unknown };
  try {
    header = JSON.parse(body.subarray(8, 8 + len).toString('utf8'));
  } catch {
    throw KILN_ERR_DIST_BAD_REQUEST('frame header is not JSON');
  }
  const sizes = header?.blobSizes;
  if (!Array.isArray(sizes) || sizes.some((n) => !Number.isSafeInteger(n) || n < 0))
    throw KILN_ERR_DIST_BAD_REQUEST('frame header has no valid blobSizes');
  const blobs: Buffer[] = [];
  let at = 8 + len;
  for (const n of sizes as number[]) {
    if (at + n > body.length) throw KILN_ERR_DIST_BAD_REQUEST('frame is shorter than its header says');
    blobs.push(body.subarray(at, at + n));
    at += n;
  }
  if (at !== body.length) throw KILN_ERR_DIST_BAD_REQUEST('frame has trailing bytes');
  return { header, blobs };
}

/** What a client sends to run a compile on a worker (blobs: one per input, in order). */
export interface JobRequestHeader {
  readonly toolchain: {
    readonly kind: string;
    readonly digest: string;
    readonly compiler: string;
    /** A toolchain named by version (rustup): the worker resolves it instead of receiving an archive. */
    readonly version?: Readonly<Record<string, string>>;
    /** With `version`: the triple the client compiles for. */
    readonly targetTriple?: string;
  };
  /** The client's working directory, reproduced inside the sandbox. */
  readonly cwd: string;
  readonly argv: readonly string[];
  readonly env: Readonly<Record<string, string>>;
  /** Paths relative to cwd. */
  readonly inputs: readonly string[];
  readonly outputs: readonly string[];
  readonly timeoutMs: number;
}

export const jobRequestSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['toolchain', 'cwd', 'argv', 'env', 'inputs', 'outputs', 'timeoutMs', 'blobSizes'],
  properties: {
    toolchain: {
      type: 'object',
      additionalProperties: false,
      required: ['kind', 'digest', 'compiler'],
      properties: {
        kind: { type: 'string', maxLength: 100 },
        digest: { type: 'string', pattern: '^[0-9a-f]{64}$' },
        compiler: { type: 'string', pattern: '^/', maxLength: 4096 },
        version: {
          type: 'object',
          maxProperties: 16,
          additionalProperties: { type: 'string', maxLength: 200 },
        },
        targetTriple: { type: 'string', pattern: '^[A-Za-z0-9_.]+(-[A-Za-z0-9_.]+)+$', maxLength: 100 },
      },
    },
    cwd: { type: 'string', pattern: '^/', maxLength: 4096 },
    argv: { type: 'array', minItems: 1, maxItems: 10_000, items: { type: 'string', maxLength: 65_536 } },
    env: { type: 'object', maxProperties: 200, additionalProperties: { type: 'string', maxLength: 65_536 } },
    inputs: { type: 'array', maxItems: 4096, items: { type: 'string', maxLength: 4096 } },
    outputs: { type: 'array', minItems: 1, maxItems: 16, items: { type: 'string', maxLength: 4096 } },
    timeoutMs: { type: 'integer', minimum: 100, maximum: 3_600_000 },
    blobSizes: { type: 'array', items: { type: 'integer' } },
  },
} as const;

/** What a worker answers (blobs: stdout, stderr, then one per output present). */
export interface JobResultHeader {
  readonly exitCode: number | null;
  readonly signal: string | null;
  readonly timedOut: boolean;
  /** The outputs that exist, relative to cwd, in blob order after stdout and stderr. */
  readonly outputs: readonly string[];
  /** Wall time of the job in the sandbox (absent from workers before this field existed). */
  readonly elapsedMs?: number;
  /** The worker's limit the job ran into: the client compiles locally and caches nothing from it. */
  readonly limitExceeded?: LimitKind;
}
