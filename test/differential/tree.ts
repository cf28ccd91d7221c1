/**
 * Snapshots of a scenario's directory tree: what a compile created or changed, how to undo it, and
 * a readable account of the first difference between two compiles' effects.
 */
import fs from 'node:fs';
import path from 'node:path';

export interface Entry {
  readonly type: 'file' | 'symlink' | 'dir' | 'other';
  /** Permission bits (st_mode & 0o7777). */
  readonly mode: number;
  readonly data?: Buffer;
  readonly target?: string;
  /** Device, inode, size, mtime and ctime: an unchanged stamp means unchanged content. */
  readonly stamp: string;
}

export type Tree = ReadonlyMap<string, Entry>;

/** What a compile did to the tree: every created or changed path, and `null` for a removed one. */
export type TreeDiff = ReadonlyMap<string, Entry | null>;

/** Every entry under `root` (symlinks are not followed), keyed by its path relative to `root`. */
export function scanTree(root: string, previous?: Tree): Map<string, Entry> {
  const out = new Map<string, Entry>();
  const walk = (rel: string) => {
    for (const name of fs.readdirSync(path.join(root, rel)).sort()) {
      const r = rel ? `${rel}/${name}` : name;
      const abs = path.join(root, r);
      const st = fs.lstatSync(abs, { bigint: true });
      const stamp = `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
      const mode = Number(st.mode & 0o7777n);
      if (st.isSymbolicLink()) out.set(r, { type: 'symlink', mode, target: fs.readlinkSync(abs), stamp });
      else if (st.isDirectory()) {
        out.set(r, { type: 'dir', mode, stamp });
        walk(r);
      } else if (st.isFile()) {
        const known = previous?.get(r);
        const data = known?.stamp === stamp && known.data ? known.data : fs.readFileSync(abs);
        out.set(r, { type: 'file', mode, data, stamp });
      } else out.set(r, { type: 'other', mode, stamp });
    }
  };
  walk('');
  return out;
}

function sameEntry(a: Entry, b: Entry): boolean {
  if (a.type !== b.type || a.mode !== b.mode) return false;
  if (a.type === 'symlink') return a.target === b.target;
  if (a.type === 'file') return a.stamp === b.stamp || a.data!.equals(b.data!);
  return true;
}

export function diffTrees(before: Tree, after: Tree): Map<string, Entry | null> {
  const diff = new Map<string, Entry | null>();
  for (const [rel, entry] of after) {
    const old = before.get(rel);
    if (!old || !sameEntry(old, entry)) diff.set(rel, entry);
  }
  for (const rel of before.keys()) if (!after.has(rel)) diff.set(rel, null);
  return diff;
}

/** Puts the tree back as it was in `before`, undoing `diff` (deepest paths first when removing). */
export function restoreTree(root: string, before: Tree, diff: TreeDiff): void {
  const paths = [...diff.keys()].sort((a, b) => b.length - a.length);
  for (const rel of paths) {
    const abs = path.join(root, rel);
    if (!before.has(rel)) fs.rmSync(abs, { recursive: true, force: true });
  }
  for (const rel of paths.reverse()) {
    const old = before.get(rel);
    if (!old) continue;
    const abs = path.join(root, rel);
    if (old.type === 'dir') {
      fs.mkdirSync(abs, { recursive: true });
      fs.chmodSync(abs, old.mode);
      continue;
    }
    fs.rmSync(abs, { recursive: true, force: true });
    if (old.type === 'symlink') fs.symlinkSync(old.target!, abs);
    else if (old.type === 'file') {
      fs.writeFileSync(abs, old.data!);
      fs.chmodSync(abs, old.mode);
    }
  }
}

/** Names the ELF section that holds `offset`, when `data` is a 64-bit little-endian ELF file. */
function elfSection(data: Buffer, offset: number): string | undefined {
  if (data.length < 64 || data.readUInt32BE(0) !== 0x7f454c46 || data[4] !== 2 || data[5] !== 1)
    return undefined;
  const shoff = Number(data.readBigUInt64LE(0x28));
  const shentsize = data.readUInt16LE(0x3a);
  const shnum = data.readUInt16LE(0x3c);
  const shstrndx = data.readUInt16LE(0x3e);
  if (shoff === 0 || shoff + shnum * shentsize > data.length) return undefined;
  const header = (i: number) => shoff + i * shentsize;
  const strtab = Number(data.readBigUInt64LE(header(shstrndx) + 0x18));
  const name = (i: number) => {
    const start = strtab + data.readUInt32LE(header(i));
    return data.subarray(start, data.indexOf(0, start)).toString('latin1');
  };
  if (offset >= shoff) return 'section headers';
  for (let i = 1; i < shnum; i++) {
    const type = data.readUInt32LE(header(i) + 4);
    const start = Number(data.readBigUInt64LE(header(i) + 0x18));
    const size = Number(data.readBigUInt64LE(header(i) + 0x20));
    if (type !== 8 && offset >= start && offset < start + size) return name(i);
  }
  return offset < 64 ? 'ELF header' : undefined;
}

function firstDifference(a: Buffer, b: Buffer): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return n;
}

const clip = (s: string) => (s.length > 160 ? `${s.slice(0, 160)}…` : s);

/** Bytes that are probably text: the first differing line; otherwise sizes and the first differing offset. */
export function describeBytes(what: string, want: Buffer, got: Buffer): string {
  const at = firstDifference(want, got);
  const texty = (b: Buffer) => !b.subarray(0, 4096).includes(0);
  if (texty(want) && texty(got)) {
    const line = want.subarray(0, at).toString('latin1').split('\n').length;
    const lineOf = (b: Buffer) => JSON.stringify(b.toString('latin1').split('\n')[line - 1] ?? '<none>');
    return `${what} differs at line ${line}: plain ${clip(lineOf(want))}, kiln ${clip(lineOf(got))}`;
  }
  const section = elfSection(want, at);
  return (
    `${what} differs: plain ${want.length} B, kiln ${got.length} B, first difference at 0x${at.toString(16)}` +
    (section ? ` (${section})` : '')
  );
}

function describeEntry(e: Entry | null | undefined): string {
  if (!e) return 'absent';
  if (e.type === 'symlink') return `a symlink to ${e.target}`;
  if (e.type === 'file') return `a file of ${e.data!.length} B, mode ${e.mode.toString(8)}`;
  return `a ${e.type}`;
}

/**
 * The differences between what two compiles did to the tree (`want`: the plain compile's), one
 * line each, the most telling first. Empty when they did the same.
 */
export function compareDiffs(want: TreeDiff, got: TreeDiff): string[] {
  const out: string[] = [];
  const paths = [...new Set([...want.keys(), ...got.keys()])].sort();
  for (const rel of paths) {
    const w = want.get(rel);
    const g = got.get(rel);
    if (w === undefined)
      out.push(`${rel}: kiln left ${describeEntry(g)}, the plain compile did not touch it`);
    else if (g === undefined)
      out.push(`${rel}: the plain compile left ${describeEntry(w)}, kiln did not touch it`);
    else if (w === null || g === null) {
      if (w !== g) out.push(`${rel}: plain left ${describeEntry(w)}, kiln ${describeEntry(g)}`);
    } else if (w.type === 'file' && g.type === 'file' && !w.data!.equals(g.data!))
      out.push(describeBytes(rel, w.data!, g.data!));
    else if (w.type !== g.type || w.target !== g.target)
      out.push(`${rel}: plain left ${describeEntry(w)}, kiln ${describeEntry(g)}`);
    else if (w.mode !== g.mode)
      out.push(`${rel}: mode ${w.mode.toString(8)} (plain) vs ${g.mode.toString(8)} (kiln)`);
  }
  return out;
}
