/**
 * A minimal ustar writer for the resolver kit's hostile archives. A real tar tool or library would
 * tidy exactly what the kit needs to keep (absolute names, `..`, links leaving the root), and the
 * SDK takes no dependency for a test helper.
 */
import fs from 'node:fs/promises';
import zlib from 'node:zlib';

export type ConformanceTarEntry =
  | { readonly type: 'dir'; readonly path: string }
  | {
      readonly type: 'file';
      readonly path: string;
      readonly data: string | Uint8Array;
      readonly mode?: number;
    }
  | { readonly type: 'symlink'; readonly path: string; readonly target: string };

const BLOCK = 512;

function field(header: Buffer, offset: number, length: number, value: string): void {
  const bytes = Buffer.from(value, 'utf8');
  if (bytes.length > length) throw new Error(`tar field too long: ${value}`);
  bytes.copy(header, offset);
}

const octal = (n: number, length: number) => `${n.toString(8).padStart(length - 1, '0')}\0`;

function header(entry: ConformanceTarEntry, size: number): Buffer {
  const h = Buffer.alloc(BLOCK);
  field(h, 0, 100, entry.path);
  const mode = entry.type === 'file' ? (entry.mode ?? 0o644) : entry.type === 'dir' ? 0o755 : 0o777;
  field(h, 100, 8, octal(mode, 8));
  field(h, 108, 8, octal(0, 8));
  field(h, 116, 8, octal(0, 8));
  field(h, 124, 12, octal(size, 12));
  field(h, 136, 12, octal(0, 12));
  field(h, 148, 8, '        ');
  field(h, 156, 1, entry.type === 'file' ? '0' : entry.type === 'dir' ? '5' : '2');
  if (entry.type === 'symlink') field(h, 157, 100, entry.target);
  field(h, 257, 6, 'ustar\0');
  field(h, 263, 2, '00');
  let sum = 0;
  for (const b of h) sum += b;
  field(h, 148, 8, `${sum.toString(8).padStart(6, '0')}\0 `);
  return h;
}

/** Writes `entries`, in order and exactly as given, as a gzip'd tar at `file`. */
export async function writeTarGz(entries: readonly ConformanceTarEntry[], file: string): Promise<void> {
  const blocks: Buffer[] = [];
  for (const entry of entries) {
    const data = entry.type === 'file' ? Buffer.from(entry.data) : Buffer.alloc(0);
    blocks.push(header(entry, data.length), data);
    const pad = (BLOCK - (data.length % BLOCK)) % BLOCK;
    if (pad) blocks.push(Buffer.alloc(pad));
  }
  blocks.push(Buffer.alloc(2 * BLOCK));
  await fs.writeFile(file, zlib.gzipSync(Buffer.concat(blocks)));
}
