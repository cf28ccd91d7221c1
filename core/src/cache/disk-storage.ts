import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from '../log.js';
import type { EntryKind, Storage } from './storage.js';

const KINDS: readonly EntryKind[] = ['r', 'm'];
const STALE_TEMP_MS = 60 * 60 * 1000;
/**
 * A hit refreshes an entry's mtime (what eviction orders by) only when it is older than this:
 * least recently used to the hour, and one syscall less on nearly every hit.
 */
export const RECENCY_STEP_MS = 60 * 60 * 1000;

interface FileInfo {
  readonly file: string;
  readonly size: number;
  readonly usedMs: number;
}

/**
 * Content-addressed files under `<dir>/{r,m}/<2 hex>/<key>`. Writes go to `<dir>/tmp` and are
 * renamed into place, so concurrent daemons and a crash mid-write never leave a half entry.
 * A hit refreshes the file's mtime when it is over an hour old; eviction removes the least recently
 * used first.
 */
export class DiskStorage implements Storage {
  private bytes = 0;
  private eviction: Promise<void> | undefined;
  private readonly tmpDir: string;

  constructor(
    readonly dir: string,
    private readonly limit: number,
    private readonly log: Logger,
  ) {
    this.tmpDir = path.join(dir, 'tmp');
  }

  private pathOf(kind: EntryKind, key: string): string {
    return path.join(this.dir, kind, key.slice(0, 2), key);
  }

  // Synchronous file calls inside async methods: a hit is one small read, and going through the
  // thread pool would cost more than it saves.
  async get(kind: EntryKind, key: string): Promise<Buffer | undefined> {
    return this.getSync(kind, key);
  }

  getSync(kind: EntryKind, key: string): Buffer | undefined {
    let fd: number;
    try {
      fd = fs.openSync(this.pathOf(kind, key), 'r');
    } catch {
      return undefined;
    }
    try {
      const st = fs.fstatSync(fd);
      if (!st.isFile()) return undefined;
      const data = readAll(fd, st.size);
      if (Date.now() - st.mtimeMs > RECENCY_STEP_MS) {
        try {
          const now = new Date();
          fs.futimesSync(fd, now, now);
        } catch {
          // A read-only cache still serves hits; it just cannot record recency.
        }
      }
      return data;
    } catch {
      return undefined;
    } finally {
      fs.closeSync(fd);
    }
  }

  async put(kind: EntryKind, key: string, data: Buffer): Promise<void> {
    this.putSync(kind, key, data);
  }

  putSync(kind: EntryKind, key: string, data: Buffer): void {
    const file = this.pathOf(kind, key);
    fs.mkdirSync(this.tmpDir, { recursive: true });
    const tmp = path.join(this.tmpDir, `${key}.${process.pid}.${randomBytes(4).toString('hex')}`);
    try {
      // The daemon's umask decides: private, or shared as the `umask` option says.
      fs.writeFileSync(tmp, data);
      fs.mkdirSync(path.dirname(file), { recursive: true });
      fs.renameSync(tmp, file);
    } catch (err) {
      fs.rmSync(tmp, { force: true });
      throw err;
    }
    this.bytes += data.length;
    if (this.bytes > this.limit) void this.evict();
  }

  /**
   * The same as putSync through the thread pool: for copies made in the background (a remote
   * tier's hit backfilled here), which must not hold up the daemon's other requests.
   */
  async putInBackground(kind: EntryKind, key: string, data: Buffer): Promise<void> {
    const file = this.pathOf(kind, key);
    await fs.promises.mkdir(this.tmpDir, { recursive: true });
    const tmp = path.join(this.tmpDir, `${key}.${process.pid}.${randomBytes(4).toString('hex')}`);
    try {
      await fs.promises.writeFile(tmp, data);
      await fs.promises.mkdir(path.dirname(file), { recursive: true });
      await fs.promises.rename(tmp, file);
    } catch (err) {
      await fs.promises.rm(tmp, { force: true });
      throw err;
    }
    this.bytes += data.length;
    if (this.bytes > this.limit) void this.evict();
  }

  async exists(kind: EntryKind, key: string): Promise<boolean> {
    return fs.existsSync(this.pathOf(kind, key));
  }

  async remove(kind: EntryKind, key: string): Promise<void> {
    try {
      fs.rmSync(this.pathOf(kind, key), { force: true });
    } catch (err) {
      this.log.warn(`cannot remove ${kind}/${key}: ${(err as Error).message}`);
    }
  }

  size(): number {
    return this.bytes;
  }

  private async listEntries(): Promise<FileInfo[]> {
    const out: FileInfo[] = [];
    await this.eachEntry((info) => out.push(info));
    return out;
  }

  /** Calls `visit` for every entry on disk, one bucket directory at a time. */
  private async eachEntry(visit: (info: FileInfo) => void): Promise<void> {
    for (const kind of KINDS) {
      let buckets: string[];
      try {
        buckets = await fs.promises.readdir(path.join(this.dir, kind));
      } catch {
        continue;
      }
      for (const bucket of buckets) {
        const bucketDir = path.join(this.dir, kind, bucket);
        let names: string[];
        try {
          names = await fs.promises.readdir(bucketDir);
        } catch {
          continue;
        }
        for (const name of names) {
          const file = path.join(bucketDir, name);
          try {
            const st = await fs.promises.stat(file);
            visit({ file, size: st.size, usedMs: st.mtimeMs });
          } catch {
            // Removed by another process meanwhile.
          }
        }
      }
    }
  }

  /** Counts what is on disk (other processes share the directory) and removes stale temp files. */
  async rescan(): Promise<number> {
    // Summed as it goes: a list of every entry would hold ~30 MB for 100,000 of them.
    let bytes = 0;
    await this.eachEntry((e) => {
      bytes += e.size;
    });
    this.bytes = bytes;
    try {
      for (const name of await fs.promises.readdir(this.tmpDir)) {
        const file = path.join(this.tmpDir, name);
        const st = await fs.promises.stat(file).catch(() => undefined);
        if (st && Date.now() - st.mtimeMs > STALE_TEMP_MS) await fs.promises.rm(file, { force: true });
      }
    } catch {
      // No tmp dir yet.
    }
    return this.bytes;
  }

  /**
   * Removes every result and manifest (`kiln --clear`); returns how many. Entries written
   * meanwhile by another daemon may survive. Throws when the cache dir is not writable.
   */
  async clear(): Promise<number> {
    const entries = await this.listEntries();
    for (const kind of KINDS)
      await fs.promises.rm(path.join(this.dir, kind), { recursive: true, force: true });
    this.bytes = 0;
    return entries.length;
  }

  /** Removes least recently used entries until the cache is at 90% of its limit. */
  evict(): Promise<void> {
    this.eviction ??= this.runEviction().finally(() => {
      this.eviction = undefined;
    });
    return this.eviction;
  }

  private async runEviction(): Promise<void> {
    try {
      const entries = await this.listEntries();
      let total = entries.reduce((sum, e) => sum + e.size, 0);
      const target = Math.floor(this.limit * 0.9);
      if (total > this.limit) {
        entries.sort((a, b) => a.usedMs - b.usedMs);
        let removed = 0;
        for (const e of entries) {
          if (total <= target) break;
          await fs.promises.rm(e.file, { force: true });
          total -= e.size;
          removed++;
        }
        this.log.info(`evicted ${removed} entries; cache now ${total} bytes`);
      }
      this.bytes = total;
    } catch (err) {
      this.log.warn(`eviction failed: ${(err as Error).message}`);
    }
  }
}

/** The whole file, `size` bytes as fstat said; a file that shrank meanwhile is cut short (the envelope check refuses it). */
function readAll(fd: number, size: number): Buffer {
  const data = Buffer.allocUnsafeSlow(size);
  let got = 0;
  while (got < size) {
    const n = fs.readSync(fd, data, got, size - got, got);
    if (n === 0) break;
    got += n;
  }
  return got === size ? data : data.subarray(0, got);
}
