/**
 * Packaged toolchains on the client, so a compiler is packaged once rather than per job: packing
 * gcc takes seconds. A weak key (the real binary's path, size, mtime and content hash, and the
 * directory of the name it was called by) maps to the spec; archives are stored once per digest and evicted least recently used first.
 */
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { PackagedToolchain, ToolchainSpec } from '@kiln/plugins';
import { findExecutable } from '../client/find-executable.js';
import { KILN_ERR_TOOLCHAIN_NOT_FOUND } from '../errors.js';
import { sha256File } from '../util/sha256-file.js';
import type { packageToolchain } from './package.js';

interface IndexEntry {
  readonly spec: ToolchainSpec;
  readonly size: number;
  lastUsed: number;
}

interface IndexFile {
  readonly version: 1;
  readonly entries: Record<string, IndexEntry>;
}

const INDEX = 'index.json';

/** The packer (and tar) load on the first packaging: a daemon finding its toolchains stored never needs them. */
const packLazily: typeof packageToolchain = async (compiler, out) =>
  (await import('./package.js')).packageToolchain(compiler, out);

/** The package as `called` uses it: the worker runs the compiler by that name, which the archive holds. */
const calledAs = (t: PackagedToolchain, called: string): PackagedToolchain => ({
  ...t,
  spec: { ...t.spec, compiler: called },
});

export class ToolchainCache {
  private index: Map<string, IndexEntry> | undefined;
  private readonly inflight = new Map<string, Promise<PackagedToolchain>>();
  private saving: Promise<void> = Promise.resolve();
  private clock = 0;

  /** @param dir where archives and the index live (e.g. `<cache_dir>/toolchains`). */
  constructor(
    readonly dir: string,
    readonly maxBytes: number,
    private readonly pack: typeof packageToolchain = packLazily,
  ) {}

  /** The archive path of a digest. */
  archivePath(digest: string): string {
    return path.join(this.dir, `${digest}.tar.gz`);
  }

  /**
   * The packaged toolchain of `compiler` (a path or a name on PATH), packaging it on the first call
   * and whenever the compiler binary changed. Concurrent calls for one compiler share one packaging.
   * Rejects with the KilnErrors of packageToolchain.
   */
  async get(compiler: string): Promise<PackagedToolchain> {
    const called = findExecutable(compiler, process.env.PATH, process.cwd(), new Set());
    if (!called) throw KILN_ERR_TOOLCHAIN_NOT_FOUND(compiler);
    const key = await this.weakKey(called);
    let job = this.inflight.get(key);
    if (!job) {
      job = this.lookupOrPackage(key, called).finally(() => this.inflight.delete(key));
      this.inflight.set(key, job);
    }
    return calledAs(await job, called);
  }

  /** Total bytes of the archives held. */
  async size(): Promise<number> {
    return this.totalSize(await this.load());
  }

  /**
   * The key of the binary `called` runs, with the directory its names are packed from (package.ts
   * `aliases`): cc and gcc, links to one gcc, share one package; g++ is another binary.
   */
  private async weakKey(called: string): Promise<string> {
    const real = await fsp.realpath(called);
    const st = await fsp.stat(real);
    const fields = [path.dirname(called), real, st.size, st.mtimeMs, await sha256File(real)];
    return createHash('sha256').update(JSON.stringify(fields)).digest('hex');
  }

  /**
   * The stored package of `compiler` as the binary is now, without packaging it: milliseconds, where
   * packaging takes seconds. Undefined when there is none (or the compiler is not found).
   */
  async find(compiler: string): Promise<PackagedToolchain | undefined> {
    const called = findExecutable(compiler, process.env.PATH, process.cwd(), new Set());
    const found = called ? await this.lookup(await this.weakKey(called)) : undefined;
    return found && called ? calledAs(found, called) : undefined;
  }

  private async lookup(key: string): Promise<PackagedToolchain | undefined> {
    const index = await this.load();
    const hit = index.get(key);
    if (!hit || !fs.existsSync(this.archivePath(hit.spec.digest))) return undefined;
    hit.lastUsed = this.now();
    await this.save(index);
    return { spec: hit.spec, archive: this.archivePath(hit.spec.digest) };
  }

  private async lookupOrPackage(key: string, called: string): Promise<PackagedToolchain> {
    const found = await this.lookup(key);
    if (found) return found;
    const index = await this.load();
    await fsp.mkdir(this.dir, { recursive: true });
    const tmp = path.join(this.dir, `.packing-${process.pid}-${randomBytes(6).toString('hex')}.tar.gz`);
    let spec: ToolchainSpec;
    try {
      spec = await this.pack(called, tmp);
      await fsp.rename(tmp, this.archivePath(spec.digest));
    } finally {
      await fsp.rm(tmp, { force: true });
    }
    const { size } = await fsp.stat(this.archivePath(spec.digest));
    index.set(key, { spec, size, lastUsed: this.now() });
    await this.evict(index, spec.digest);
    await this.save(index);
    return { spec, archive: this.archivePath(spec.digest) };
  }

  /** A strictly increasing time, so two uses in one millisecond still have an order. */
  private now(): number {
    this.clock = Math.max(this.clock + 1, Date.now());
    return this.clock;
  }

  private totalSize(index: Map<string, IndexEntry>): number {
    const sizes = new Map<string, number>();
    for (const e of index.values()) sizes.set(e.spec.digest, e.size);
    return [...sizes.values()].reduce((a, b) => a + b, 0);
  }

  /** Drops least recently used digests until the archives fit, never the one just added. */
  private async evict(index: Map<string, IndexEntry>, keep: string): Promise<void> {
    const lastUse = new Map<string, number>();
    for (const e of index.values())
      lastUse.set(e.spec.digest, Math.max(lastUse.get(e.spec.digest) ?? 0, e.lastUsed));
    const order = [...lastUse.entries()].sort((a, b) => a[1] - b[1]).map(([digest]) => digest);
    for (const digest of order) {
      if (this.totalSize(index) <= this.maxBytes) break;
      if (digest === keep) continue;
      for (const [k, e] of index) if (e.spec.digest === digest) index.delete(k);
      await fsp.rm(this.archivePath(digest), { force: true });
    }
  }

  private async load(): Promise<Map<string, IndexEntry>> {
    if (this.index) return this.index;
    let entries: Record<string, IndexEntry> = {};
    try {
      const parsed = JSON.parse(await fsp.readFile(path.join(this.dir, INDEX), 'utf8')) as IndexFile;
      if (parsed.version === 1 && parsed.entries && typeof parsed.entries === 'object')
        entries = parsed.entries;
    } catch {
      // A missing or corrupt index only costs a repackaging; the archives are found again by digest.
    }
    const valid = (e: IndexEntry) =>
      /^[0-9a-f]{64}$/.test(String(e?.spec?.digest)) &&
      Number.isFinite(e.size) &&
      Number.isFinite(e.lastUsed);
    this.index ??= new Map(Object.entries(entries).filter(([, e]) => valid(e)));
    for (const e of this.index.values()) this.clock = Math.max(this.clock, e.lastUsed);
    return this.index;
  }

  /** Writes the index through a temporary file; writes are queued so the last state wins. */
  private save(index: Map<string, IndexEntry>): Promise<void> {
    const write = async () => {
      const file = path.join(this.dir, INDEX);
      const tmp = `${file}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
      const body: IndexFile = { version: 1, entries: Object.fromEntries(index) };
      await fsp.mkdir(this.dir, { recursive: true });
      await fsp.writeFile(tmp, JSON.stringify(body, null, 1));
      await fsp.rename(tmp, file);
    };
    this.saving = this.saving.then(write, write);
    return this.saving;
  }
}
