import { describe, expect, it } from 'vitest';
import {
  Action,
  decodeRequest,
  decodeResponse,
  encodeRequest,
  encodeResponse,
  FrameReader,
  MAX_FRAME,
  MAX_REQUEST_FRAME,
} from '../src/client/protocol.js';

const body = (frame: Buffer) => {
  const r = new FrameReader();
  const b = r.push(frame);
  if (!b) throw new Error('incomplete');
  return b;
};

describe('protocol', () => {
  it('round-trips requests, in chunks of any size', () => {
    const req = {
      flags: 3,
      self: Buffer.from('/usr/bin/kiln'),
      cwd: Buffer.from('/src'),
      argv: [Buffer.from('gcc'), Buffer.from('-c'), Buffer.from('a b.c')],
      env: [Buffer.from('PATH=/bin'), Buffer.from('EMPTY=')],
    };
    const frame = encodeRequest(req);
    const reader = new FrameReader();
    let got: Buffer | undefined;
    for (let i = 0; i < frame.length; i += 3) got = reader.push(frame.subarray(i, i + 3)) ?? got;
    expect(decodeRequest(got!)).toEqual(req);
  });

  it('round-trips every response action', () => {
    for (const res of [
      { action: Action.RESULT, exitCode: -1, stdout: Buffer.from('out'), stderr: Buffer.from('') },
      { action: Action.EXEC, program: '/usr/bin/gcc', argv: ['/usr/bin/gcc', 'a.o'] },
      { action: Action.FALLBACK },
    ] as const) {
      expect(decodeResponse(body(encodeResponse(res)))).toEqual(res);
    }
  });

  it('rejects bad magic, oversized frames, truncation and trailing bytes', () => {
    expect(() => new FrameReader().push(Buffer.from('HTTP/1.1 200'))).toThrow(/bad magic/);
    const huge = Buffer.from('KLN1\0\0\0\0');
    huge.writeUInt32LE(MAX_FRAME + 1, 4);
    expect(() => new FrameReader().push(huge)).toThrow(/exceeds the limit/);
    // The daemon's request limit: refused on the head alone, before any body arrives.
    huge.writeUInt32LE(MAX_REQUEST_FRAME + 1, 4);
    expect(() => new FrameReader(MAX_REQUEST_FRAME).push(huge)).toThrow(
      `frame of ${MAX_REQUEST_FRAME + 1} bytes exceeds the limit of ${MAX_REQUEST_FRAME}`,
    );
    huge.writeUInt32LE(MAX_REQUEST_FRAME, 4);
    expect(new FrameReader(MAX_REQUEST_FRAME).push(huge)).toBeUndefined();
    const frame = encodeRequest({
      flags: 0,
      self: Buffer.alloc(0),
      cwd: Buffer.from('/'),
      argv: [],
      env: [],
    });
    const b = body(frame);
    expect(() => decodeRequest(b.subarray(0, b.length - 1))).toThrow(/truncated/);
    expect(() => decodeRequest(Buffer.concat([b, Buffer.from('x')]))).toThrow(/trailing/);
    expect(() => new FrameReader().push(Buffer.concat([frame, Buffer.from('x')]))).toThrow(/trailing/);
    const lying = Buffer.alloc(16);
    lying.writeUInt32LE(0xffffffff, 12);
    expect(() => decodeRequest(lying)).toThrow(/list count exceeds body/);
    expect(() => decodeResponse(Buffer.from([9, 0, 0, 0]))).toThrow(/unknown action/);
  });
});
