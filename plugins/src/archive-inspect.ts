/**
 * Looks inside a toolchain archive on the client, before anything is sent: which compression it
 * uses, and the first bytes of one file (following the archive's own symbolic links), so that a
 * resolver can read the ELF header of the compiler inside and say which machines run it.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import zlib from 'node:zlib';
import { Parser, type ReadEntry } from 'tar';

export type ArchiveCompression = 'none' | 'gzip' | 'xz' | 'bzip2' | 'zstd' | 'unknown';

/** sha256 (hex) of a file's bytes: the digest of an archive-based ToolchainSpec. */
export async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of fs.createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** The compression of `archive` from its magic bytes; safeExtract reads 'none' and 'gzip'. */
export async function archiveCompression(archive: string): Promise<ArchiveCompression> {
  const fh = await fsp.open(archive, 'r');
  const head = Buffer.alloc(512);
  const { bytesRead } = await fh.read(head, 0, 512, 0).finally(() => fh.close());
  if (bytesRead >= 2 && head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (bytesRead >= 6 && head.subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0])))
    return 'xz';
  if (bytesRead >= 3 && head.subarray(0, 3).toString('latin1') === 'BZh') return 'bzip2';
  if (bytesRead >= 4 && head.readUInt32LE(0) === 0xfd2fb528) return 'zstd';
  if (bytesRead >= 262 && head.subarray(257, 262).toString('latin1') === 'ustar') return 'none';
  return 'unknown';
}

type Visit = (entry: ReadEntry) => void;

/** Runs `visit` over every entry of a plain or gzip'd tar; rejects when it is not one. */
async function walk(archive: string, visit: Visit): Promise<void> {
  const compression = await archiveCompression(archive);
  if (compression !== 'gzip' && compression !== 'none')
    throw new Error(`${compression} archives are not supported (use a gzip'd or plain tar)`);
  let problem: Error | undefined;
  const parser = new Parser({
    strict: true,
    onReadEntry: (entry) => {
      try {
        visit(entry);
      } catch (err) {
        problem ??= err as Error;
      }
      entry.resume();
    },
  });
  parser.on('warn', (_code: string, message: string) => {
    problem ??= new Error(message);
  });
  const done = new Promise<void>((resolve, reject) => {
    parser.on('end', () => resolve());
    parser.on('error', reject);
  });
  const raw = fs.createReadStream(archive);
  const input = compression === 'gzip' ? raw.pipe(zlib.createGunzip()) : raw;
  raw.on('error', (err) => input.destroy(err));
  try {
    for await (const chunk of input) {
      if (!parser.write(chunk as Buffer)) await new Promise((r) => parser.once('drain', r));
      if (problem) break;
    }
    if (!problem) {
      parser.end();
      await done;
    }
  } catch (err) {
    problem ??= new Error(`unreadable: ${(err as Error).message}`);
  } finally {
    raw.destroy();
  }
  if (problem) throw problem;
}

const key = (p: string) =>
  p
    .split('/')
    .filter((c) => c !== '' && c !== '.')
    .join('/');

/** Follows the archive's symbolic links from `member` to the entry it names, like the kernel would. */
function resolveMember(member: string, links: ReadonlyMap<string, string>): string {
  let queue = key(member).split('/');
  const dir: string[] = [];
  for (let hops = 0; queue.length > 0; ) {
    const c = queue.shift()!;
    if (c === '' || c === '.') continue;
    if (c === '..') {
      dir.pop();
      continue;
    }
    dir.push(c);
    const target = links.get(dir.join('/'));
    if (target === undefined) continue;
    if (++hops > 40) throw new Error(`${member}: too many levels of symbolic links`);
    dir.pop();
    if (target.startsWith('/')) dir.length = 0;
    queue = [...target.split('/'), ...queue];
  }
  return dir.join('/');
}

export interface ArchiveMember {
  /** The path of the regular file `member` resolved to, relative to the archive's root. */
  readonly path: string;
  /** Its first `maxBytes` bytes. */
  readonly head: Buffer;
  readonly executable: boolean;
}

/**
 * The regular file at `member` (an absolute or root-relative path inside the archive, symbolic
 * links followed) in the plain or gzip'd tar `archive`: its first `maxBytes` bytes. Resolves
 * undefined when there is no such file; rejects with a plain Error when the archive is unreadable.
 */
export async function readArchiveMember(
  archive: string,
  member: string,
  maxBytes = 1024 * 1024,
): Promise<ArchiveMember | undefined> {
  const links = new Map<string, string>();
  const files = new Map<string, boolean>();
  await walk(archive, (entry) => {
    if (entry.type === 'SymbolicLink' && entry.linkpath) links.set(key(entry.path), entry.linkpath);
    else if (entry.type === 'File' || entry.type === 'OldFile')
      files.set(key(entry.path), ((entry.mode ?? 0) & 0o111) !== 0);
  });
  const wanted = resolveMember(member, links);
  if (!files.has(wanted)) return undefined;
  const chunks: Buffer[] = [];
  let size = 0;
  await walk(archive, (entry) => {
    if (key(entry.path) !== wanted || size > 0) return;
    entry.on('data', (chunk: Buffer) => {
      if (size < maxBytes) chunks.push(chunk.subarray(0, maxBytes - size));
      size += chunk.length;
    });
  });
  return { path: wanted, head: Buffer.concat(chunks), executable: files.get(wanted) === true };
}

/** Paths of an archive's entries (root-relative, no leading "./"), with their types. */
export async function listArchive(archive: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  await walk(archive, (entry) => void out.set(key(entry.path), entry.type));
  return out;
}
