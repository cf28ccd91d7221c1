/**
 * The unix-socket protocol between a thin client (native/kiln-client.c or thin-client.ts) and the
 * daemon. Little-endian, length-prefixed, no JSON, so that a 100-line C program can speak it.
 *
 *   frame    = "KLN1" u32:bodyLength body
 *   request  = u32:flags bytes:self bytes:cwd u32:argc bytes{argc} u32:envc bytes{envc}
 *   response = u32:action ...
 *     RESULT   i32:exitCode bytes:stdout bytes:stderr
 *     EXEC     bytes:program u32:argc bytes{argc}     (run this program yourself, argv included)
 *     FALLBACK                                        (find the compiler yourself and run it)
 *   bytes    = u32:length byte{length}
 *
 * Request argv is [compiler, ...args]: what the user typed after `kiln`, or the masquerade name.
 */
import { KILN_ERR_PROTOCOL } from '../errors.js';

export const MAGIC = Buffer.from('KLN1', 'latin1');
/** The largest response (a compiler's stdout and stderr). */
export const MAX_FRAME = 256 * 1024 * 1024;
/**
 * The largest request the daemon reads. A request is the client's argv and environment, which
 * Linux caps at 6 MiB together (a quarter of the stack limit, at most 3/4 of 8 MiB), so a bigger
 * one comes from no kiln client.
 */
export const MAX_REQUEST_FRAME = 16 * 1024 * 1024;

export const RequestFlag = {
  STDOUT_TTY: 1,
  STDERR_TTY: 2,
  /** argv[0] is a control command (stats, zero-stats, stop, ping), not a compiler. */
  CONTROL: 4,
  /** gcc sizes quoted source lines to the terminal on stdin. */
  STDIN_TTY: 8,
  /** Bits 16–24 hold the client's umask. */
  UMASK: 16,
} as const;

export const UMASK_SHIFT = 16;

/** The client's umask from request flags; undefined from an older client that did not send it. */
export function umaskOf(flags: number): number | undefined {
  return flags & RequestFlag.UMASK ? (flags >>> UMASK_SHIFT) & 0o777 : undefined;
}

export const Action = { RESULT: 0, EXEC: 1, FALLBACK: 2 } as const;

export interface Request {
  readonly flags: number;
  /** The client executable's own path, so that PATH lookups can skip it. */
  readonly self: Buffer;
  readonly cwd: Buffer;
  readonly argv: readonly Buffer[];
  readonly env: readonly Buffer[];
}

export type Response =
  | {
      readonly action: typeof Action.RESULT;
      readonly exitCode: number;
      readonly stdout: Buffer;
      readonly stderr: Buffer;
    }
  | { readonly action: typeof Action.EXEC; readonly program: string; readonly argv: readonly string[] }
  | { readonly action: typeof Action.FALLBACK };

class Writer {
  private readonly parts: Buffer[] = [];
  u32(n: number): this {
    const b = Buffer.allocUnsafe(4);
    b.writeUInt32LE(n >>> 0);
    this.parts.push(b);
    return this;
  }
  i32(n: number): this {
    const b = Buffer.allocUnsafe(4);
    b.writeInt32LE(n);
    this.parts.push(b);
    return this;
  }
  bytes(data: Buffer | string): this {
    const b = typeof data === 'string' ? Buffer.from(data) : data;
    this.u32(b.length);
    this.parts.push(b);
    return this;
  }
  list(items: readonly (Buffer | string)[]): this {
    this.u32(items.length);
    for (const item of items) this.bytes(item);
    return this;
  }
  frame(): Buffer {
    const body = Buffer.concat(this.parts);
    const head = Buffer.allocUnsafe(8);
    MAGIC.copy(head, 0);
    head.writeUInt32LE(body.length, 4);
    return Buffer.concat([head, body]);
  }
}

class Reader {
  private offset = 0;
  constructor(private readonly buf: Buffer) {}
  private need(n: number): void {
    if (this.offset + n > this.buf.length) throw KILN_ERR_PROTOCOL('truncated body');
  }
  u32(): number {
    this.need(4);
    const n = this.buf.readUInt32LE(this.offset);
    this.offset += 4;
    return n;
  }
  i32(): number {
    this.need(4);
    const n = this.buf.readInt32LE(this.offset);
    this.offset += 4;
    return n;
  }
  bytes(): Buffer {
    const n = this.u32();
    this.need(n);
    const b = this.buf.subarray(this.offset, this.offset + n);
    this.offset += n;
    return b;
  }
  list(): Buffer[] {
    const n = this.u32();
    // Each entry takes at least 4 bytes: reject counts the body cannot hold before allocating.
    if (n * 4 > this.buf.length - this.offset) throw KILN_ERR_PROTOCOL('list count exceeds body');
    const out: Buffer[] = [];
    for (let i = 0; i < n; i++) out.push(this.bytes());
    return out;
  }
  end(): void {
    if (this.offset !== this.buf.length) throw KILN_ERR_PROTOCOL('trailing bytes after body');
  }
}

export function encodeRequest(req: Request): Buffer {
  return new Writer().u32(req.flags).bytes(req.self).bytes(req.cwd).list(req.argv).list(req.env).frame();
}

export function decodeRequest(body: Buffer): Request {
  const r = new Reader(body);
  const req = { flags: r.u32(), self: r.bytes(), cwd: r.bytes(), argv: r.list(), env: r.list() };
  r.end();
  return req;
}

export function encodeResponse(res: Response): Buffer {
  const w = new Writer().u32(res.action);
  if (res.action === Action.RESULT) w.i32(res.exitCode).bytes(res.stdout).bytes(res.stderr);
  else if (res.action === Action.EXEC) w.bytes(res.program).list(res.argv);
  return w.frame();
}

export function decodeResponse(body: Buffer): Response {
  const r = new Reader(body);
  const action = r.u32();
  let res: Response;
  if (action === Action.RESULT) res = { action, exitCode: r.i32(), stdout: r.bytes(), stderr: r.bytes() };
  else if (action === Action.EXEC)
    res = { action, program: r.bytes().toString(), argv: r.list().map(String) };
  else if (action === Action.FALLBACK) res = { action };
  else throw KILN_ERR_PROTOCOL(`unknown action ${action}`);
  r.end();
  return res;
}

/**
 * Accumulates stream chunks and yields the body of the first complete frame. The chunks are kept
 * as they come and joined once, when the declared length has arrived: linear in the frame size
 * whatever the chunking. Throws on a wrong magic or a length over `maxLength` as soon as the
 * 8-byte head is in, so a stray writer cannot make the daemon buffer forever.
 */
export class FrameReader {
  private readonly chunks: Buffer[] = [];
  private size = 0;
  /** The body length from the head; -1 until the head has arrived. */
  private length = -1;

  constructor(private readonly maxLength = MAX_FRAME) {}

  push(chunk: Buffer): Buffer | undefined {
    this.chunks.push(chunk);
    this.size += chunk.length;
    if (this.length < 0) {
      if (this.size < 8) return undefined;
      const head = Buffer.concat(this.chunks, 8);
      if (!head.subarray(0, 4).equals(MAGIC)) throw KILN_ERR_PROTOCOL('bad magic');
      const length = head.readUInt32LE(4);
      if (length > this.maxLength)
        throw KILN_ERR_PROTOCOL(`frame of ${length} bytes exceeds the limit of ${this.maxLength}`);
      this.length = length;
    }
    if (this.size < 8 + this.length) return undefined;
    if (this.size > 8 + this.length) throw KILN_ERR_PROTOCOL('trailing bytes after frame');
    const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.size);
    return all.subarray(8);
  }
}
