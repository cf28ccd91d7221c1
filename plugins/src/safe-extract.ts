/**
 * Extraction of toolchain archives a worker received from a client, i.e. from anyone holding a
 * job token. node-tar alone is not enough: as root it keeps owners and setuid bits, `strict`
 * reports a bad entry but goes on extracting the rest, and it has no size limits. So every entry is
 * checked before anything touches the disk, and the result is checked again before it is used.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import zlib from 'node:zlib';
import { Parser, type ReadEntry, extract as tarExtract } from 'tar';
import { KILN_ERR_TOOLCHAIN_EXTRACT, KILN_ERR_TOOLCHAIN_UNSAFE, KilnError } from './errors.js';

export interface ExtractLimits {
  /** Total size of the files' contents; default 4 GiB (a clang with libLLVM is ~1 GiB). */
  readonly maxBytes?: number;
  /** Number of entries; default 100 000. */
  readonly maxEntries?: number;
}

type Kind = 'dir' | 'file' | 'symlink';
const KINDS: Readonly<Record<string, Kind>> = { Directory: 'dir', File: 'file', SymbolicLink: 'symlink' };
const MAX_HOPS = 40;
const MAX_META = 64 * 1024;

/** What the pre-scan learnt: every path the archive creates, explicitly or as a parent. */
interface Scan {
  readonly kinds: Map<string, Kind>;
  readonly links: Map<string, string>;
}

function components(p: string): string[] {
  return p.split('/').filter((c) => c !== '' && c !== '.');
}

/** Throws a message when `entry` may not be extracted after the entries already in `scan`. */
function checkEntry(entry: ReadEntry, scan: Scan): void {
  const raw = entry.path;
  const kind = KINDS[entry.type];
  if (!kind) throw new Error(`${raw}: ${entry.type} entries are not allowed`);
  if (raw.includes('\0')) throw new Error(`${JSON.stringify(raw)}: NUL in a path`);
  if (raw.startsWith('/')) throw new Error(`${raw}: absolute path`);
  const parts = components(raw);
  if (parts.includes('..')) throw new Error(`${raw}: ".." in a path`);
  if (parts.length === 0) {
    if (kind === 'dir') return;
    throw new Error(`${raw}: not a file name`);
  }
  const key = parts.join('/');
  const seen = scan.kinds.get(key);
  if (seen && !(seen === 'dir' && kind === 'dir'))
    throw new Error(`${raw}: appears twice or replaces a directory`);
  for (let i = 1; i < parts.length; i++) {
    const parent = parts.slice(0, i).join('/');
    const parentKind = scan.kinds.get(parent);
    if (parentKind === 'symlink') throw new Error(`${raw}: goes through the symbolic link ${parent}`);
    if (parentKind === 'file') throw new Error(`${raw}: goes through the file ${parent}`);
    scan.kinds.set(parent, 'dir');
  }
  scan.kinds.set(key, kind);
  if (kind === 'symlink') {
    const target = entry.linkpath ?? '';
    if (!target || target.includes('\0')) throw new Error(`${raw}: empty symbolic link`);
    if (target.startsWith('/')) throw new Error(`${raw}: symbolic link to the absolute path ${target}`);
    scan.links.set(key, target);
  }
}

/**
 * Whether the link at `key` resolves inside the root, following the archive's other links as the
 * kernel would: `a/b/up -> ../..` is harmless alone but lets `a/b/x -> up/..` escape.
 */
function staysInside(key: string, scan: Scan): boolean {
  const dir = key.split('/').slice(0, -1);
  let queue = scan.links.get(key)!.split('/');
  for (let hops = 0; queue.length > 0; ) {
    const c = queue.shift()!;
    if (c === '' || c === '.') continue;
    if (c === '..') {
      if (dir.length === 0) return false;
      dir.pop();
      continue;
    }
    dir.push(c);
    const target = scan.links.get(dir.join('/'));
    if (target === undefined) continue;
    if (++hops > MAX_HOPS || target.startsWith('/')) return false;
    dir.pop();
    queue = [...target.split('/'), ...queue];
  }
  return true;
}

async function prescan(archive: string, maxBytes: number, maxEntries: number): Promise<Scan> {
  const scan: Scan = { kinds: new Map(), links: new Map() };
  let problem: string | undefined;
  let bytes = 0;
  let entries = 0;
  const parser = new Parser({
    strict: true,
    maxMetaEntrySize: MAX_META,
    onReadEntry: (entry) => {
      entry.resume();
      if (problem) return;
      try {
        if (++entries > maxEntries) throw new Error(`more than ${maxEntries} entries`);
        if (entry.type === 'File') bytes += entry.size ?? 0;
        if (bytes > maxBytes) throw new Error(`more than ${maxBytes} bytes of content`);
        checkEntry(entry, scan);
      } catch (err) {
        problem = (err as Error).message;
      }
    },
  });
  parser.on('warn', (_code: string, message: string) => {
    problem ??= message;
  });
  parser.on('error', (err: Error) => {
    problem ??= err.message;
  });
  const done = new Promise<void>((resolve) => parser.on('end', () => resolve()));
  // Counting the decompressed stream bounds a gzip bomb made of padding and metadata, not files.
  const budget = maxBytes + maxEntries * (3 * 512 + MAX_META) + 1024 * 1024;
  let seen = 0;
  const head = Buffer.alloc(2);
  const fd = await fsp.open(archive, 'r');
  await fd.read(head, 0, 2, 0).finally(() => fd.close());
  const raw = fs.createReadStream(archive);
  const input = head[0] === 0x1f && head[1] === 0x8b ? raw.pipe(zlib.createGunzip()) : raw;
  raw.on('error', (err) => input.destroy(err));
  try {
    for await (const chunk of input) {
      seen += (chunk as Buffer).length;
      if (seen > budget) problem ??= 'decompresses to more than its limits allow';
      if (problem) break;
      if (!parser.write(chunk as Buffer)) await new Promise((r) => parser.once('drain', r));
    }
  } catch (err) {
    problem ??= `unreadable: ${(err as Error).message}`;
  } finally {
    raw.destroy();
  }
  // node-tar ignores a partial header at the very end; a tar is whole 512-byte blocks.
  if (!problem && seen % 512 !== 0) problem = 'truncated (not a whole number of tar blocks)';
  if (!problem) {
    parser.end();
    await done;
  }
  if (!problem)
    for (const key of scan.links.keys())
      if (!staysInside(key, scan)) problem = `${key}: symbolic link leaves the root`;
  if (problem) throw KILN_ERR_TOOLCHAIN_UNSAFE(archive, problem);
  return scan;
}

const normalMode = (mode: number, isDir: boolean) => (isDir || mode & 0o111 ? 0o755 : 0o644);

/** Fixes modes and checks that exactly what the pre-scan allowed was created; throws a message otherwise. */
async function verify(root: string, scan: Scan, rel = ''): Promise<void> {
  for (const name of await fsp.readdir(path.join(root, rel))) {
    const key = rel ? `${rel}/${name}` : name;
    const file = path.join(root, key);
    const st = await fsp.lstat(file);
    const expected = scan.kinds.get(key);
    const kind: Kind | undefined = st.isDirectory()
      ? 'dir'
      : st.isFile()
        ? 'file'
        : st.isSymbolicLink()
          ? 'symlink'
          : undefined;
    if (!kind || kind !== expected)
      throw new Error(`${key}: extracted as something the archive did not declare`);
    if (kind === 'file' && st.nlink !== 1) throw new Error(`${key}: extracted as a hard link`);
    if (kind !== 'symlink') await fsp.chmod(file, normalMode(st.mode, kind === 'dir'));
    if (kind === 'dir') await verify(root, scan, key);
  }
}

/**
 * Extracts the (gzip'd) tar `archive` to `dest`, which must not exist, all or nothing. Rejects with
 * KILN_ERR_TOOLCHAIN_UNSAFE (400) when any entry is unsafe or a limit is exceeded, before writing
 * anything; with KILN_ERR_TOOLCHAIN_EXTRACT when writing fails. Either way nothing is left behind.
 */
export async function safeExtract(archive: string, dest: string, limits: ExtractLimits = {}): Promise<void> {
  const scan = await prescan(archive, limits.maxBytes ?? 4 * 1024 ** 3, limits.maxEntries ?? 100_000);
  if (fs.existsSync(dest)) throw KILN_ERR_TOOLCHAIN_EXTRACT(archive, `${dest} already exists`);
  await fsp.mkdir(path.dirname(dest), { recursive: true });
  const tmp = path.join(
    path.dirname(dest),
    `.${path.basename(dest)}.partial-${randomBytes(6).toString('hex')}`,
  );
  try {
    await fsp.mkdir(tmp, { mode: 0o700 });
    const problems: string[] = [];
    await tarExtract({
      file: archive,
      cwd: tmp,
      strict: true,
      preserveOwner: false,
      maxMetaEntrySize: MAX_META,
      dmode: 0o755,
      fmode: 0o644,
      // Links are made below: node-tar refuses a link whose target passes another link (usr/bin/cc ->
      // ../../etc/alternatives/cc -> ...), which toolchains are full of.
      filter: (_p, entry) => {
        const e = entry as ReadEntry;
        const kind = KINDS[e.type];
        // The pre-scan already refused these; this guards against the two passes parsing differently.
        if (!kind) problems.push(`${e.path}: ${e.type} entries are not allowed`);
        if (typeof e.mode === 'number') e.mode = normalMode(e.mode, e.type === 'Directory');
        return kind === 'file' || kind === 'dir';
      },
      onwarn: (_code, message) => problems.push(String(message)),
    }).catch((err: Error) => problems.push(err.message));
    if (problems.length) throw KILN_ERR_TOOLCHAIN_UNSAFE(archive, problems[0]!);
    // Safe in any order: the pre-scan refused every path through a link and every link leaving the root.
    for (const [key, target] of scan.links) {
      await fsp.mkdir(path.dirname(path.join(tmp, key)), { recursive: true, mode: 0o755 });
      await fsp.symlink(target, path.join(tmp, key));
    }
    await verify(tmp, scan).catch((err: Error) => {
      throw KILN_ERR_TOOLCHAIN_UNSAFE(archive, err.message);
    });
    await fsp.chmod(tmp, 0o755);
    await fsp.rename(tmp, dest);
  } catch (err) {
    await fsp.rm(tmp, { recursive: true, force: true });
    if (err instanceof KilnError) throw err;
    throw KILN_ERR_TOOLCHAIN_EXTRACT(archive, (err as Error).message);
  }
}
