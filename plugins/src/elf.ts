/**
 * Which machines can run a binary, read from its ELF header: the scheduler routes jobs by host
 * triple, and a file name (`x86_64-linux-gnu-gcc-12`) says nothing trustworthy about that.
 */
import fs from 'node:fs/promises';
import { KILN_ERR_TOOLCHAIN_ELF } from './errors.js';

const MACHINES: Readonly<Record<number, string>> = {
  62: 'x86_64',
  183: 'aarch64',
  40: 'armv7',
  3: 'i686',
  243: 'riscv64gc',
};
const PT_INTERP = 3;
// More program headers than this is not a real binary; the cap bounds what a hostile file costs.
const MAX_PROGRAM_HEADERS = 4096;

export interface ElfInfo {
  readonly bits: 32 | 64;
  /** `e_type`: 1 relocatable, 2 executable, 3 shared object or PIE. */
  readonly type: number;
  readonly machine: number;
  readonly arch: string;
  /** The dynamic loader (PT_INTERP) when there is one; static binaries and objects have none. */
  readonly interpreter?: string;
  readonly libc: 'gnu' | 'musl';
  /** The host triple of the machines that run this file, e.g. `x86_64-unknown-linux-gnu`. */
  readonly triple: string;
}

function linuxTriple(arch: string, libc: 'gnu' | 'musl'): string {
  // 32-bit ARM Linux distributions are hard-float (armhf); the ABI suffix says so.
  return arch === 'armv7' ? `${arch}-unknown-linux-${libc}eabihf` : `${arch}-unknown-linux-${libc}`;
}

/** Reads up to `length` bytes at `offset`; fewer at the end of the file. */
export type ReadAt = (offset: number, length: number) => Promise<Buffer>;

/**
 * Reads `file`'s ELF header and PT_INTERP. Resolves undefined when the file is not ELF at all
 * (no magic); rejects with KILN_ERR_TOOLCHAIN_ELF when it is ELF but truncated, malformed or for a
 * machine kiln does not know.
 */
export async function readElf(file: string): Promise<ElfInfo | undefined> {
  const fh = await fs.open(file, 'r');
  try {
    return await readElfFrom(file, async (offset, length) => {
      const buf = Buffer.alloc(length);
      const { bytesRead } = await fh.read(buf, 0, length, offset);
      return buf.subarray(0, bytesRead);
    });
  } finally {
    await fh.close();
  }
}

/** readElf for bytes already in memory (e.g. a file read out of an archive); `name` is for messages. */
export function readElfBuffer(name: string, bytes: Buffer): Promise<ElfInfo | undefined> {
  return readElfFrom(name, async (offset, length) =>
    offset >= bytes.length ? Buffer.alloc(0) : bytes.subarray(offset, offset + length),
  );
}

/** readElf over any byte source; `file` names it in messages. */
export async function readElfFrom(file: string, readAt: ReadAt): Promise<ElfInfo | undefined> {
  const head = await readAt(0, 64);
  if (head.length < 4 || head.readUInt32BE(0) !== 0x7f454c46) return undefined;
  if (head.length < 52) throw KILN_ERR_TOOLCHAIN_ELF(file, 'truncated ELF header');
  const cls = head[4];
  const data = head[5];
  if (cls !== 1 && cls !== 2) throw KILN_ERR_TOOLCHAIN_ELF(file, `unknown ELF class ${cls}`);
  if (data !== 1 && data !== 2) throw KILN_ERR_TOOLCHAIN_ELF(file, `unknown ELF byte order ${data}`);
  const bits = cls === 2 ? 64 : 32;
  if (bits === 64 && head.length < 64) throw KILN_ERR_TOOLCHAIN_ELF(file, 'truncated ELF header');
  const le = data === 1;
  const u16 = (b: Buffer, o: number) => (le ? b.readUInt16LE(o) : b.readUInt16BE(o));
  const u32 = (b: Buffer, o: number) => (le ? b.readUInt32LE(o) : b.readUInt32BE(o));
  const word = (b: Buffer, o: number) =>
    bits === 32 ? u32(b, o) : Number(le ? b.readBigUInt64LE(o) : b.readBigUInt64BE(o));

  const type = u16(head, 16);
  const machine = u16(head, 18);
  const arch = MACHINES[machine];
  if (!arch) throw KILN_ERR_TOOLCHAIN_ELF(file, `unsupported machine 0x${machine.toString(16)}`);

  const phoff = word(head, bits === 64 ? 0x20 : 0x1c);
  const phentsize = u16(head, bits === 64 ? 0x36 : 0x2a);
  const phnum = u16(head, bits === 64 ? 0x38 : 0x2c);
  let interpreter: string | undefined;
  if (phnum > 0) {
    if (phnum > MAX_PROGRAM_HEADERS || phentsize < (bits === 64 ? 56 : 32))
      throw KILN_ERR_TOOLCHAIN_ELF(file, 'malformed program header table');
    const table = await readAt(phoff, phnum * phentsize);
    if (table.length < phnum * phentsize) throw KILN_ERR_TOOLCHAIN_ELF(file, 'truncated program headers');
    for (let i = 0; i < phnum; i++) {
      const ph = table.subarray(i * phentsize);
      if (u32(ph, 0) !== PT_INTERP) continue;
      const offset = word(ph, bits === 64 ? 8 : 4);
      const size = word(ph, bits === 64 ? 0x20 : 16);
      if (size === 0 || size > 4096) throw KILN_ERR_TOOLCHAIN_ELF(file, 'malformed PT_INTERP');
      const raw = await readAt(offset, size);
      if (raw.length < size) throw KILN_ERR_TOOLCHAIN_ELF(file, 'truncated PT_INTERP');
      interpreter = raw.toString('latin1').replace(/\0.*$/s, '');
      break;
    }
  }
  const libc = interpreter && /ld-musl/.test(interpreter) ? 'musl' : 'gnu';
  return { bits, type, machine, arch, interpreter, libc, triple: linuxTriple(arch, libc) };
}

/** The host triple `file` runs on. Rejects with KILN_ERR_TOOLCHAIN_ELF for anything but a known ELF. */
export async function elfHostTriple(file: string): Promise<string> {
  const info = await readElf(file);
  if (!info) throw KILN_ERR_TOOLCHAIN_ELF(file, 'not an ELF file');
  return info.triple;
}

const ARCHES: Readonly<Record<string, string>> = {
  x64: 'x86_64',
  arm64: 'aarch64',
  arm: 'armv7',
  ia32: 'i686',
  riscv64: 'riscv64gc',
};
let cachedHost: string | undefined;

/** The host triple of the machine running this Node, e.g. `aarch64-unknown-linux-musl`. */
export function hostTriple(): string {
  if (cachedHost) return cachedHost;
  const arch = ARCHES[process.arch] ?? process.arch;
  if (process.platform === 'darwin') cachedHost = `${arch}-apple-darwin`;
  else if (process.platform === 'win32') cachedHost = `${arch}-pc-windows-msvc`;
  else if (process.platform !== 'linux') cachedHost = `${arch}-unknown-${process.platform}`;
  else {
    // Node built against glibc reports the glibc it runs on; a musl build reports none.
    const report = process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined;
    const header = report?.header;
    cachedHost = linuxTriple(arch, header?.glibcVersionRuntime ? 'gnu' : 'musl');
  }
  return cachedHost;
}
