import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { Header } from 'tar';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { KilnError } from '../src/errors.js';
import { safeExtractInChild } from '../src/extract-process.js';
import { safeExtract } from '../src/safe-extract.js';

interface Raw {
  path: string;
  type?: 'File' | 'Directory' | 'SymbolicLink' | 'Link' | 'CharacterDevice' | 'FIFO';
  linkpath?: string;
  mode?: number;
  body?: string;
  /** Declared size when it differs from the body (a header that lies). */
  size?: number;
}

/** A gzip'd tar written header by header, so it can hold whatever an attacker would put there. */
function tarball(entries: Raw[]): Buffer {
  const blocks: Buffer[] = [];
  for (const e of entries) {
    const body = Buffer.from(e.body ?? '');
    const block = Buffer.alloc(512);
    new Header({
      path: e.path,
      type: e.type ?? 'File',
      linkpath: e.linkpath ?? '',
      mode: e.mode ?? (e.type === 'Directory' ? 0o755 : 0o644),
      size: e.size ?? body.length,
      uid: 1234,
      gid: 1234,
      mtime: new Date(0),
      devmaj: 0,
      devmin: 0,
    }).encode(block);
    blocks.push(block, body, Buffer.alloc((512 - (body.length % 512)) % 512));
  }
  blocks.push(Buffer.alloc(1024));
  return zlib.gzipSync(Buffer.concat(blocks));
}

let base: string;
let parent: string;
let dest: string;
beforeEach(() => {
  base = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-extract-'));
  parent = path.join(base, 'toolchains');
  fs.mkdirSync(parent);
  dest = path.join(parent, 'root');
});
afterEach(() => fs.rmSync(base, { recursive: true, force: true }));

function archive(entries: Raw[] | Buffer): string {
  const file = path.join(base, 'in.tar.gz');
  fs.writeFileSync(file, Buffer.isBuffer(entries) ? entries : tarball(entries));
  return file;
}

async function refused(entries: Raw[] | Buffer, limits?: { maxBytes?: number; maxEntries?: number }) {
  const err = await safeExtract(archive(entries), dest, limits).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(KilnError);
  expect((err as KilnError).statusCode).toBe(400);
  expect((err as KilnError).code).toBe('KILN_ERR_TOOLCHAIN_UNSAFE');
  // All or nothing: no dest, no temporary directory beside it, nothing written above it.
  expect(fs.readdirSync(parent)).toEqual([]);
  expect(fs.readdirSync(base).sort()).toEqual(['in.tar.gz', 'toolchains']);
  return (err as KilnError).message;
}

const ok: Raw[] = [
  { path: 'usr/', type: 'Directory' },
  { path: 'usr/bin/', type: 'Directory' },
  { path: 'usr/bin/cc', body: '#!/bin/sh\n', mode: 0o755 },
  { path: 'usr/lib/libx.so.1.0', body: 'lib' },
  { path: 'usr/lib/libx.so.1', type: 'SymbolicLink', linkpath: 'libx.so.1.0' },
  { path: 'lib', type: 'SymbolicLink', linkpath: 'usr/lib' },
  { path: 'usr/bin/up', type: 'SymbolicLink', linkpath: '../lib/libx.so.1' },
  // A chain through other links, as /usr/bin/cc -> /etc/alternatives/cc -> /usr/bin/gcc on Debian.
  { path: 'etc/alternatives/cc', type: 'SymbolicLink', linkpath: '../../usr/bin/cc' },
  { path: 'usr/bin/mycc', type: 'SymbolicLink', linkpath: '../../etc/alternatives/cc' },
];

describe('safeExtract', () => {
  it('extracts a good archive with normalised modes and relative links', async () => {
    await safeExtract(archive(ok), dest);
    expect(fs.readdirSync(parent)).toEqual(['root']);
    expect(fs.readFileSync(path.join(dest, 'lib/libx.so.1'), 'utf8')).toBe('lib');
    expect(fs.readlinkSync(path.join(dest, 'lib'))).toBe('usr/lib');
    expect(fs.readFileSync(path.join(dest, 'usr/bin/up'), 'utf8')).toBe('lib');
    expect(fs.readFileSync(path.join(dest, 'usr/bin/mycc'), 'utf8')).toBe('#!/bin/sh\n');
    expect(fs.statSync(path.join(dest, 'usr/bin/cc')).mode & 0o7777).toBe(0o755);
    expect(fs.statSync(path.join(dest, 'usr/lib/libx.so.1.0')).mode & 0o7777).toBe(0o644);
    expect(fs.statSync(path.join(dest, 'usr/lib')).mode & 0o7777).toBe(0o755);
    expect(fs.statSync(path.join(dest, 'usr/bin/cc')).uid).toBe(process.getuid!());
  });

  it('strips setuid, setgid and sticky bits (node-tar keeps them for root)', async () => {
    await safeExtract(
      archive([
        { path: 'suid', body: 'x', mode: 0o4755 },
        { path: 'sgid', body: 'x', mode: 0o2644 },
        { path: 'sticky/', type: 'Directory', mode: 0o1777 },
        { path: 'world', body: 'x', mode: 0o666 },
      ]),
      dest,
    );
    expect(fs.statSync(path.join(dest, 'suid')).mode & 0o7777).toBe(0o755);
    expect(fs.statSync(path.join(dest, 'sgid')).mode & 0o7777).toBe(0o644);
    expect(fs.statSync(path.join(dest, 'sticky')).mode & 0o7777).toBe(0o755);
    expect(fs.statSync(path.join(dest, 'world')).mode & 0o7777).toBe(0o644);
  });

  it('refuses a ".." path', async () => {
    expect(await refused([...ok, { path: 'usr/../../evil', body: 'x' }])).toMatch(/"\.\." in a path/);
  });

  it('refuses an absolute path', async () => {
    expect(await refused([{ path: `${base}/abs-evil`, body: 'x' }])).toMatch(/absolute path/);
    expect(fs.existsSync(`${base}/abs-evil`)).toBe(false);
  });

  it('refuses a symlink to an absolute path', async () => {
    expect(await refused([...ok, { path: 'host-etc', type: 'SymbolicLink', linkpath: '/etc' }])).toMatch(
      /absolute/,
    );
  });

  it('refuses a symlink that climbs out of the root', async () => {
    const link = { path: 'a/x', type: 'SymbolicLink', linkpath: '../../x' } as const;
    expect(await refused([{ path: 'a/', type: 'Directory' }, link])).toMatch(/leaves the root/);
  });

  it('refuses links that escape only together', async () => {
    const msg = await refused([
      { path: 'a/b/up', type: 'SymbolicLink', linkpath: '../..' },
      { path: 'a/b/x', type: 'SymbolicLink', linkpath: 'up/..' },
    ]);
    expect(msg).toMatch(/a\/b\/x: symbolic link leaves the root/);
  });

  it('refuses a file written through a symlinked directory', async () => {
    const msg = await refused([
      { path: 'real/', type: 'Directory' },
      { path: 'd', type: 'SymbolicLink', linkpath: 'real' },
      { path: 'd/evil', body: 'x' },
    ]);
    expect(msg).toMatch(/goes through the symbolic link d/);
  });

  it('refuses a symlink that replaces a directory already written to', async () => {
    const msg = await refused([
      { path: 'a/b/file', body: 'x' },
      { path: 'a', type: 'SymbolicLink', linkpath: '.' },
    ]);
    expect(msg).toMatch(/replaces a directory/);
    expect(
      await refused([
        { path: 'f', body: 'x' },
        { path: 'f', type: 'SymbolicLink', linkpath: '.' },
      ]),
    ).toMatch(/appears twice/);
  });

  it('refuses hard links, devices and fifos', async () => {
    expect(await refused([...ok, { path: 'h', type: 'Link', linkpath: 'usr/bin/cc' }])).toMatch(
      /Link entries/,
    );
    expect(await refused([{ path: 'null', type: 'CharacterDevice' }])).toMatch(/CharacterDevice entries/);
    expect(await refused([{ path: 'pipe', type: 'FIFO' }])).toMatch(/FIFO entries/);
  });

  it('refuses archives over the size or entry limits, even when the header lies', async () => {
    expect(await refused([{ path: 'big', body: 'x'.repeat(2000) }], { maxBytes: 1000 })).toMatch(/bytes/);
    expect(await refused(ok, { maxEntries: 3 })).toMatch(/more than 3 entries/);
    // Claims 10 GiB with no body: refused at the header, before reading anything.
    expect(await refused([{ path: 'huge', size: 10 * 1024 ** 3 }])).toMatch(/bytes of content/);
  });

  it('refuses a gzip bomb of padding', async () => {
    const bomb = zlib.gzipSync(Buffer.alloc(16 * 1024 ** 2));
    expect(await refused(bomb, { maxBytes: 1024, maxEntries: 10 })).toMatch(/limits/);
  });

  it('refuses garbage and truncated archives', async () => {
    await refused(Buffer.from('not a tarball at all, not even close'.repeat(40)));
    const good = zlib.gunzipSync(tarball(ok));
    await refused(zlib.gzipSync(good.subarray(0, 700)));
    await refused(tarball(ok).subarray(0, 60));
  });

  it('leaves an existing destination alone', async () => {
    fs.mkdirSync(dest);
    fs.writeFileSync(path.join(dest, 'keep'), 'x');
    await expect(safeExtract(archive(ok), dest)).rejects.toThrow(/already exists/);
    expect(fs.readdirSync(dest)).toEqual(['keep']);
    expect(fs.readdirSync(parent)).toEqual(['root']);
  });
});

// The worker unpacks through a child process (the built one: `npm run build` comes first), so that
// the memory unpacking takes leaves with it.
describe('safeExtractInChild', () => {
  it('extracts the same tree as in-process', async () => {
    await safeExtractInChild(archive(ok), dest);
    const inProcess = path.join(parent, 'in-process');
    await safeExtract(archive(ok), inProcess);
    const tree = (d: string) =>
      fs
        .readdirSync(d, { recursive: true, withFileTypes: true })
        .map(
          (e) =>
            `${path.relative(d, path.join(e.parentPath, e.name))} ${e.isFile() ? fs.readFileSync(path.join(e.parentPath, e.name), 'utf8') : e.isSymbolicLink() ? '->' : '/'}`,
        )
        .sort();
    expect(tree(dest).length).toBeGreaterThan(1);
    expect(tree(dest)).toEqual(tree(inProcess));
  });

  it('passes on the refusal of an unsafe archive, as a 400, with nothing left behind', async () => {
    const err = await safeExtractInChild(archive([{ path: '../evil', body: 'x' }]), dest).catch((e) => e);
    expect(err).toBeInstanceOf(KilnError);
    expect(err).toMatchObject({ code: 'KILN_ERR_TOOLCHAIN_UNSAFE', statusCode: 400 });
    expect(err.message).toMatch(/"\.\." in a path/);
    expect(fs.readdirSync(parent)).toEqual([]);
  });

  it('reports a write failure and a missing archive as extraction errors', async () => {
    fs.writeFileSync(path.join(base, 'file'), '');
    await expect(safeExtractInChild(archive(ok), path.join(base, 'file', 'root'))).rejects.toMatchObject({
      code: 'KILN_ERR_TOOLCHAIN_EXTRACT',
    });
    await expect(safeExtractInChild(path.join(base, 'none.tar.gz'), dest)).rejects.toBeInstanceOf(KilnError);
  });
});
