/**
 * The program a warm container runs while it waits for jobs: a static ELF of a few dozen bytes
 * that blocks in the kernel forever. Toolchain images hold no shell or `sleep`, and building one
 * would need a compiler on the worker, so it is written here byte by byte and bind-mounted in.
 */

/** Machine code per Node `process.arch`: block in a syscall, loop if a signal wakes it. */
const CODE: Readonly<Record<string, { machine: number; code: Buffer }>> = {
  // pause(): mov eax, 34; syscall; jmp back
  x64: { machine: 62, code: Buffer.from('b8220000000f05ebf7', 'hex') },
  // pselect6(0, 0, 0, 0, 0, 0): x0..x5 = 0; x8 = 72; svc #0; b back
  arm64: {
    machine: 183,
    code: Buffer.from(
      new Uint32Array([
        0xd2800000, 0xd2800001, 0xd2800002, 0xd2800003, 0xd2800004, 0xd2800005, 0xd2800908, 0xd4000001,
        0x17fffff8,
      ]).buffer,
    ),
  },
};

const BASE = 0x400000n;
const HEADERS = 64 + 56;

/** The idle program for `arch`, or undefined when kiln has none for it. */
export function idleProgram(arch: string = process.arch): Buffer | undefined {
  const entry = CODE[arch];
  if (!entry) return undefined;
  const size = HEADERS + entry.code.length;
  const elf = Buffer.alloc(size);
  elf.write('\x7fELF', 0, 'latin1');
  elf[4] = 2; // 64-bit
  elf[5] = 1; // little-endian
  elf[6] = 1; // ELF version
  elf.writeUInt16LE(2, 16); // ET_EXEC
  elf.writeUInt16LE(entry.machine, 18);
  elf.writeUInt32LE(1, 20);
  elf.writeBigUInt64LE(BASE + BigInt(HEADERS), 24); // e_entry
  elf.writeBigUInt64LE(64n, 32); // e_phoff
  elf.writeUInt16LE(64, 52); // e_ehsize
  elf.writeUInt16LE(56, 54); // e_phentsize
  elf.writeUInt16LE(1, 56); // e_phnum
  elf.writeUInt32LE(1, 64); // PT_LOAD
  elf.writeUInt32LE(5, 68); // PF_R | PF_X
  elf.writeBigUInt64LE(0n, 72); // p_offset
  elf.writeBigUInt64LE(BASE, 80); // p_vaddr
  elf.writeBigUInt64LE(BASE, 88); // p_paddr
  elf.writeBigUInt64LE(BigInt(size), 96); // p_filesz
  elf.writeBigUInt64LE(BigInt(size), 104); // p_memsz
  elf.writeBigUInt64LE(0x1000n, 112); // p_align
  entry.code.copy(elf, HEADERS);
  return elf;
}
