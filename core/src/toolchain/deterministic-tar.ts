/**
 * A gzip'd tar whose bytes depend only on the entries given: the archive's sha256 is the
 * toolchain's id, so packaging the same compiler twice (or on two clients) must give one digest.
 * node-tar's Pack copies times, owners and modes from the disk, so headers are written here.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';
import { Header, Pax } from 'tar';

export type TarEntry =
  | { readonly type: 'dir' }
  | { readonly type: 'symlink'; readonly target: string }
  | { readonly type: 'file'; readonly source: string; readonly size: number; readonly executable: boolean };

const BLOCK = 512;
const EPOCH = new Date(0);

function header(path: string, entry: TarEntry): Buffer[] {
  const h = new Header({
    path: entry.type === 'dir' ? `${path}/` : path,
    mode: entry.type === 'symlink' ? 0o777 : entry.type === 'dir' || entry.executable ? 0o755 : 0o644,
    uid: 0,
    gid: 0,
    size: entry.type === 'file' ? entry.size : 0,
    mtime: EPOCH,
    type: entry.type === 'dir' ? 'Directory' : entry.type === 'symlink' ? 'SymbolicLink' : 'File',
    linkpath: entry.type === 'symlink' ? entry.target : '',
    uname: '',
    gname: '',
  });
  const block = Buffer.alloc(BLOCK);
  // Paths past ustar's 100+155 bytes (deep clang include trees) need a pax record before the header.
  const needPax = h.encode(block);
  if (!needPax) return [block];
  const pax = new Pax({ path: h.path, linkpath: entry.type === 'symlink' ? entry.target : undefined });
  return [pax.encode(), block];
}

async function* blocks(entries: ReadonlyMap<string, TarEntry>): AsyncGenerator<Buffer> {
  for (const name of [...entries.keys()].sort()) {
    const entry = entries.get(name)!;
    yield* header(name, entry);
    if (entry.type !== 'file') continue;
    let n = 0;
    for await (const chunk of fs.createReadStream(entry.source)) {
      n += (chunk as Buffer).length;
      if (n > entry.size) throw new Error(`${entry.source} grew while being archived`);
      yield chunk as Buffer;
    }
    if (n !== entry.size) throw new Error(`${entry.source} shrank while being archived`);
    if (n % BLOCK) yield Buffer.alloc(BLOCK - (n % BLOCK));
  }
  yield Buffer.alloc(2 * BLOCK);
}

/**
 * Writes `entries` (relative paths, no leading slash) sorted, with mtime 0, owner 0 and normalised
 * modes, gzip'd, to `file`; resolves the sha256 hex of the written bytes and their size. Rejects
 * when a source file cannot be read or changes size meanwhile (the file may then be partial).
 */
export async function writeDeterministicTar(
  entries: ReadonlyMap<string, TarEntry>,
  file: string,
): Promise<{ digest: string; size: number }> {
  const hash = createHash('sha256');
  let size = 0;
  const tap = new Transform({
    transform(chunk: Buffer, _enc, done) {
      hash.update(chunk);
      size += chunk.length;
      done(null, chunk);
    },
  });
  await pipeline(Readable.from(blocks(entries)), zlib.createGzip(), tap, fs.createWriteStream(file));
  return { digest: hash.digest('hex'), size };
}
