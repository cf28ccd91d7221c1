/**
 * The daemon's socket under hostile or clumsy writers (issue 11, item 10): a large request sent in
 * small pieces costs linear time, an oversized or malformed frame is refused at once, and the same
 * daemon goes on serving the next client.
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { KilnSandbox } from './helpers/kiln.js';

let sb: KilnSandbox;
afterEach(() => sb?.dispose());

const MiB = 1024 * 1024;
const CONTROL = 4;

const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
};
const bytes = (b: Buffer) => Buffer.concat([u32(b.length), b]);

/** A control request (`ping`) as the thin clients frame it, with `envBytes` of environment. */
function pingFrame(envBytes: number): Buffer {
  const env = Buffer.alloc(envBytes, 'x');
  env.write('BIG=');
  const body = Buffer.concat([
    u32(CONTROL),
    bytes(Buffer.alloc(0)),
    bytes(Buffer.from('/')),
    u32(1),
    bytes(Buffer.from('ping')),
    u32(1),
    bytes(env),
  ]);
  return Buffer.concat([Buffer.from('KLN1'), u32(body.length), body]);
}

interface Exchange {
  /** Everything the daemon sent back before it closed. */
  readonly answer: Buffer;
  /** Whether the daemon closed the connection before the whole frame was written. */
  readonly cutOff: boolean;
  readonly ms: number;
}

/** Writes `frame` to the daemon `piece` bytes at a time (honouring back-pressure) and reads the answer. */
function exchange(socket: string, frame: Buffer, piece: number): Promise<Exchange> {
  const start = Date.now();
  return new Promise((resolve, reject) => {
    const conn = net.connect(socket);
    const answer: Buffer[] = [];
    let written = 0;
    let closed = false;
    conn.on('data', (c) => answer.push(c));
    // EPIPE/ECONNRESET once the daemon hung up on us: that is the refusal under test.
    conn.on('error', () => {});
    conn.on('close', () => {
      closed = true;
      resolve({ answer: Buffer.concat(answer), cutOff: written < frame.length, ms: Date.now() - start });
    });
    const pump = () => {
      while (!closed && written < frame.length) {
        const next = frame.subarray(written, written + piece);
        written += next.length;
        if (!conn.write(next)) {
          conn.once('drain', pump);
          return;
        }
      }
      if (!closed) conn.end();
    };
    conn.once('connect', pump);
    setTimeout(() => reject(new Error('the daemon neither answered nor closed within 20 s')), 20_000).unref();
  });
}

/** The daemon's CPU time so far (user + system), in ms. */
function cpuMs(pid: number): number {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
}

const pingAnswer = (pid: number) => {
  const text = Buffer.from(`${pid}\n`);
  return Buffer.concat([Buffer.from('KLN1'), u32(16 + text.length), u32(0), u32(0), bytes(text), u32(0)]);
};

describe('the daemon socket (issue 11, item 10)', () => {
  it('reassembles a 16 MiB request sent in 4 KiB pieces in linear time', async () => {
    sb = new KilnSandbox();
    expect(sb.kiln(['--start-server']).status).toBe(0);
    const pid = sb.daemonPid()!;
    const socket = path.join(sb.env.KILN_RUNTIME_DIR!, 'daemon.sock');
    const frame = pingFrame(16 * MiB - 64);
    expect(frame.length - 8).toBeLessThanOrEqual(16 * MiB);
    const before = cpuMs(pid);
    const r = await exchange(socket, frame, 4096);
    const spent = cpuMs(pid) - before;
    expect(r.cutOff).toBe(false);
    expect(r.answer.equals(pingAnswer(pid))).toBe(true);
    // Linear: copying 16 MiB a few times. The quadratic reassembly spent seconds here.
    expect(spent, `daemon CPU ${spent} ms, wall ${r.ms} ms`).toBeLessThan(300);
  });

  it('refuses an oversized or malformed frame at once, logs why, and serves the next client', async () => {
    sb = new KilnSandbox();
    expect(sb.kiln(['--start-server']).status).toBe(0);
    const pid = sb.daemonPid()!;
    const socket = path.join(sb.env.KILN_RUNTIME_DIR!, 'daemon.sock');

    // 32 MiB declared: more than any argv and environment Linux lets a process have (6 MiB).
    const big = await exchange(socket, pingFrame(32 * MiB), 4096);
    expect(big.cutOff).toBe(true);
    expect(big.answer.length).toBe(0);
    expect(big.ms).toBeLessThan(1500);
    expect(sb.log()).toMatch(
      /dropping client: malformed message on the kiln socket: frame of 33554\d\d\d bytes exceeds the limit of 16777216/,
    );

    const http = await exchange(socket, Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), 4096);
    expect(http.answer.length).toBe(0);
    expect(sb.log()).toMatch(/dropping client: malformed message on the kiln socket: bad magic/);

    // A whole frame whose body lies about its list sizes: answered "compile it yourself".
    const lying = Buffer.concat([Buffer.from('KLN1'), u32(16), u32(0), u32(0), u32(0), u32(0xffffffff)]);
    const fallback = await exchange(socket, lying, 3);
    expect(fallback.answer.equals(Buffer.concat([Buffer.from('KLN1'), u32(4), u32(2)]))).toBe(true);

    // The same daemon answers the next client.
    expect(sb.daemonPid()).toBe(pid);
    const ping = await exchange(socket, pingFrame(16), 4096);
    expect(ping.answer.equals(pingAnswer(pid))).toBe(true);
    expect(sb.kiln(['--show-stats']).status).toBe(0);
    expect(sb.daemonPid()).toBe(pid);
  });
});
