import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { elfHostTriple, hostTriple, readElf } from '../src/elf.js';
import { KilnError } from '../src/errors.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-elf-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
const root = path.resolve(import.meta.dirname, '..', '..');

/** A minimal ELF image: header, one PT_INTERP program header when `interp` is given, the string. */
function elf(opts: { bits: 32 | 64; machine: number; interp?: string; bigEndian?: boolean }): Buffer {
  const is64 = opts.bits === 64;
  const ehsize = is64 ? 64 : 52;
  const phsize = is64 ? 56 : 32;
  const interp = opts.interp ? Buffer.from(`${opts.interp}\0`) : Buffer.alloc(0);
  const buf = Buffer.alloc(ehsize + (opts.interp ? phsize : 0) + interp.length);
  const le = !opts.bigEndian;
  const u16 = (v: number, o: number) => (le ? buf.writeUInt16LE(v, o) : buf.writeUInt16BE(v, o));
  const u32 = (v: number, o: number) => (le ? buf.writeUInt32LE(v, o) : buf.writeUInt32BE(v, o));
  const word = (v: number, o: number) =>
    is64 ? (le ? buf.writeBigUInt64LE(BigInt(v), o) : buf.writeBigUInt64BE(BigInt(v), o)) : u32(v, o);
  buf.writeUInt32BE(0x7f454c46, 0);
  buf[4] = is64 ? 2 : 1;
  buf[5] = le ? 1 : 2;
  buf[6] = 1;
  u16(2, 16);
  u16(opts.machine, 18);
  if (opts.interp) {
    word(ehsize, is64 ? 0x20 : 0x1c);
    u16(phsize, is64 ? 0x36 : 0x2a);
    u16(1, is64 ? 0x38 : 0x2c);
    u32(3, ehsize);
    word(ehsize + phsize, ehsize + (is64 ? 8 : 4));
    word(interp.length, ehsize + (is64 ? 0x20 : 16));
    interp.copy(buf, ehsize + phsize);
  }
  return buf;
}

function write(name: string, data: Buffer | string): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, data);
  return file;
}

async function kilnError(p: Promise<unknown>): Promise<KilnError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(KilnError);
  return err as KilnError;
}

describe('readElf', () => {
  it('reads real x86_64 glibc binaries: gcc and node itself', async () => {
    for (const file of ['/usr/bin/gcc', process.execPath]) {
      const info = await readElf(file);
      expect(info, file).toMatchObject({ bits: 64, arch: 'x86_64', libc: 'gnu' });
      expect(info?.interpreter).toMatch(/ld-linux-x86-64\.so\.2$/);
      expect(await elfHostTriple(file)).toBe('x86_64-unknown-linux-gnu');
    }
  });

  it('maps every known machine and tells musl from glibc by PT_INTERP, not by the file name', async () => {
    const cases: [Parameters<typeof elf>[0], string][] = [
      [{ bits: 64, machine: 0xb7, interp: '/lib/ld-linux-aarch64.so.1' }, 'aarch64-unknown-linux-gnu'],
      [{ bits: 64, machine: 0xb7, interp: '/lib/ld-musl-aarch64.so.1' }, 'aarch64-unknown-linux-musl'],
      [{ bits: 64, machine: 0x3e, interp: '/lib/ld-musl-x86_64.so.1' }, 'x86_64-unknown-linux-musl'],
      [{ bits: 32, machine: 0x28, interp: '/lib/ld-linux-armhf.so.3' }, 'armv7-unknown-linux-gnueabihf'],
      [{ bits: 32, machine: 0x03, interp: '/lib/ld-linux.so.2' }, 'i686-unknown-linux-gnu'],
      [
        { bits: 64, machine: 0xf3, interp: '/lib/ld-linux-riscv64-lp64d.so.1' },
        'riscv64gc-unknown-linux-gnu',
      ],
      [{ bits: 64, machine: 0xb7 }, 'aarch64-unknown-linux-gnu'],
      [{ bits: 32, machine: 0x28, bigEndian: true }, 'armv7-unknown-linux-gnueabihf'],
    ];
    for (const [opts, triple] of cases) {
      // Named like an x86_64 tool on purpose: the header decides.
      const file = write(`x86_64-linux-gnu-gcc-${triple}`, elf(opts));
      expect(await elfHostTriple(file), triple).toBe(triple);
    }
  });

  it('reads real aarch64 binaries: an arm64 node, the arm64 cross glibc and, if installed, a cross-compiled object', async (ctx) => {
    // CI provides these (.ci/run: test/fetch-arm64-node.sh, libc6-arm64-cross); elsewhere a missing
    // one skips the test. A cross compiler is not in CI: its object is checked only when installed.
    const required = [
      path.join(root, 'bench', '.work', 'node-arm64', 'package', 'bin', 'node'),
      '/usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1',
      '/usr/aarch64-linux-gnu/lib/libc.so.6',
    ];
    const missing = required.filter((f) => !fs.existsSync(f));
    if (missing.length) {
      const why = `${missing.join(', ')} missing: run bash test/fetch-arm64-node.sh, apt install libc6-arm64-cross`;
      if (process.env.CI === 'true') throw new Error(`CI=true: ${why}`);
      ctx.skip(why);
    }
    const files = [...required];
    if (spawnSync('sh', ['-c', 'command -v aarch64-linux-gnu-gcc']).status === 0) {
      const src = write('a.c', 'int f(void) { return 1; }\n');
      const obj = path.join(dir, 'a64.o');
      expect(spawnSync('aarch64-linux-gnu-gcc', ['-c', src, '-o', obj]).status).toBe(0);
      files.push(obj);
    }
    for (const file of files) {
      expect(await readElf(file), file).toMatchObject({
        bits: 64,
        machine: 0xb7,
        arch: 'aarch64',
        libc: 'gnu',
      });
      expect(await elfHostTriple(file), file).toBe('aarch64-unknown-linux-gnu');
    }
  });

  it('rejects text, truncated and unknown files with a KilnError', async () => {
    expect(await readElf(write('text', '#!/bin/sh\necho hi\n'))).toBeUndefined();
    expect((await kilnError(elfHostTriple(path.join(dir, 'text')))).message).toMatch(/not an ELF file/);
    const full = fs.readFileSync('/usr/bin/gcc');
    expect((await kilnError(elfHostTriple(write('trunc', full.subarray(0, 40))))).message).toMatch(
      /truncated/,
    );
    // A valid header whose program headers lie past the end of the file.
    expect((await kilnError(elfHostTriple(write('trunc2', full.subarray(0, 100))))).message).toMatch(
      /truncated/,
    );
    expect(await kilnError(elfHostTriple(write('empty', '')))).toBeInstanceOf(KilnError);
    const err = await kilnError(elfHostTriple(write('sparc', elf({ bits: 64, machine: 0x2b }))));
    expect(err.code).toBe('KILN_ERR_TOOLCHAIN_ELF');
    expect(err.message).toMatch(/unsupported machine 0x2b/);
  });
});

describe('hostTriple', () => {
  it('names the machine running this Node, as its own binary says', async () => {
    expect(hostTriple()).toBe(await elfHostTriple(process.execPath));
  });
});
