/**
 * The worker's toolchains, content-addressed: `archives/<digest>` as uploaded (after the digest
 * is re-computed) and `roots/<digest>/` as the resolver materialised it. Least recently used
 * toolchains are evicted past the size limit, never while a job uses one.
 */
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { KilnError, type ToolchainResolver, type ToolchainSpec, versionDigest } from '@kiln/plugins';
import {
  KILN_ERR_DIST_BAD_REQUEST,
  KILN_ERR_DIST_TOO_LARGE,
  KILN_ERR_DIST_TOOLCHAIN_DIGEST,
  KILN_ERR_DIST_TOOLCHAIN_MISSING,
  KILN_ERR_DIST_TOOLCHAIN_UNAVAILABLE,
} from '../../errors.js';

interface Entry {
  readonly kind: string;
  readonly bytes: number;
  lastUsedMs: number;
  users: number;
}

const META = 'meta.json';
/** How long a refused toolchain named by version is answered from memory (an install may follow). */
const REFUSAL_MEMORY_MS = 30_000;

function treeBytes(dir: string): number {
  let total = 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) total += fs.lstatSync(path.join(e.parentPath, e.name)).size;
  }
  return total;
}

export class ToolchainStore {
  private readonly entries = new Map<string, Entry>();
  private readonly pending = new Map<string, Promise<void>>();
  /** Toolchains named by version that the resolver refused lately, with its answer. */
  private readonly refusals = new Map<string, { error: Error; untilMs: number }>();
  private readonly archives: string;
  private readonly roots: string;
  private readonly tmp: string;

  constructor(
    dir: string,
    private readonly maxBytes: number,
    private readonly maxArchiveBytes: number,
    private readonly resolvers: ReadonlyMap<string, ToolchainResolver>,
  ) {
    this.archives = path.join(dir, 'archives');
    this.roots = path.join(dir, 'roots');
    this.tmp = path.join(dir, 'tmp');
    fs.rmSync(this.tmp, { recursive: true, force: true });
    for (const d of [this.archives, this.roots, this.tmp]) fs.mkdirSync(d, { recursive: true });
    this.loadExisting();
  }

  /** Toolchains left by an earlier run are kept when both halves and their metadata survived. */
  private loadExisting(): void {
    for (const digest of fs.readdirSync(this.roots)) {
      const root = path.join(this.roots, digest);
      try {
        const meta = JSON.parse(fs.readFileSync(path.join(root, '..', `${digest}.${META}`), 'utf8'));
        const st = fs.statSync(meta.byVersion ? root : path.join(this.archives, digest));
        this.entries.set(digest, { kind: meta.kind, bytes: meta.bytes, lastUsedMs: st.atimeMs, users: 0 });
      } catch {
        fs.rmSync(root, { recursive: true, force: true });
      }
    }
  }

  digests(): string[] {
    return [...this.entries.keys()];
  }

  has(digest: string): boolean {
    return this.entries.has(digest);
  }

  bytesUsed(): number {
    let n = 0;
    for (const e of this.entries.values()) n += e.bytes;
    return n;
  }

  /**
   * Stores an uploaded archive: streams it to a temp file while hashing, refuses it when the content
   * does not hash to `digest` or is too big, then materialises it. Concurrent uploads of one digest
   * share the work.
   */
  async put(digest: string, kind: string, body: Readable): Promise<void> {
    if (this.entries.has(digest)) {
      body.resume();
      return;
    }
    const running = this.pending.get(digest);
    if (running) {
      // Another client is sending the same archive: wait for it (this body waits, unread). If that
      // upload fails (its client went away), this one is received in its stead.
      if (
        await running.then(
          () => true,
          () => false,
        )
      ) {
        body.resume();
        return;
      }
      return this.put(digest, kind, body);
    }
    const work = this.receive(digest, kind, body).finally(() => this.pending.delete(digest));
    this.pending.set(digest, work);
    return work;
  }

  private async receive(digest: string, kind: string, body: Readable): Promise<void> {
    const resolver = this.resolvers.get(kind);
    if (!resolver) {
      body.resume();
      throw KILN_ERR_DIST_BAD_REQUEST(
        `this worker has no "${kind}" toolchain resolver (it has ${[...this.resolvers.keys()].join(', ')})`,
      );
    }
    const tmpArchive = path.join(this.tmp, `${digest}.${randomBytes(6).toString('hex')}`);
    const tmpRoot = `${tmpArchive}.root`;
    try {
      const hash = createHash('sha256');
      let bytes = 0;
      const max = this.maxArchiveBytes;
      // pipeline closes the file on every failure (an aborted upload, a size overrun): no leaked
      // descriptor keeps the removed temp file's space.
      await pipeline(
        body,
        async function* (source: AsyncIterable<Buffer>) {
          for await (const chunk of source) {
            bytes += chunk.length;
            if (bytes > max) throw KILN_ERR_DIST_TOO_LARGE('toolchain archive', max);
            hash.update(chunk);
            yield chunk;
          }
        },
        fs.createWriteStream(tmpArchive, { mode: 0o600 }),
      );
      const actual = hash.digest('hex');
      if (actual !== digest) throw KILN_ERR_DIST_TOOLCHAIN_DIGEST(digest, actual);
      const spec = { kind, digest, hostTriples: [], compiler: '/' };
      await resolver.materialise(spec, tmpArchive, tmpRoot);
      const total = bytes + treeBytes(tmpRoot);
      this.makeRoom(total);
      fs.renameSync(tmpArchive, path.join(this.archives, digest));
      fs.writeFileSync(path.join(this.roots, `${digest}.${META}`), JSON.stringify({ kind, bytes: total }));
      fs.renameSync(tmpRoot, path.join(this.roots, digest));
      this.entries.set(digest, { kind, bytes: total, lastUsedMs: Date.now(), users: 0 });
    } finally {
      fs.rmSync(tmpArchive, { force: true });
      fs.rmSync(tmpRoot, { recursive: true, force: true });
    }
  }

  /**
   * Makes the root of a toolchain named by version (`spec.version`, no archive) with its kind's
   * resolver, once: concurrent jobs share the work. The digest must be the version's own. A resolver
   * that cannot provide it exactly answers KILN_ERR_DIST_TOOLCHAIN_UNAVAILABLE (422): the client
   * tries another worker, then compiles locally.
   */
  async resolveVersion(spec: ToolchainSpec): Promise<void> {
    const { kind, digest, version } = spec;
    if (this.entries.has(digest)) return;
    if (!version || versionDigest(kind, version) !== digest)
      throw KILN_ERR_DIST_TOOLCHAIN_DIGEST(digest, version ? versionDigest(kind, version) : 'no version');
    const resolver = this.resolvers.get(kind);
    if (!resolver?.resolveVersion)
      throw KILN_ERR_DIST_BAD_REQUEST(
        `this worker has no "${kind}" resolver that names toolchains by version (it has ${[...this.resolvers.keys()].join(', ')})`,
      );
    // A refusal is remembered for a while: every crate of a build would ask rustup again.
    const refused = this.refusals.get(digest);
    if (refused && refused.untilMs > Date.now()) throw refused.error;
    let running = this.pending.get(digest);
    if (!running) {
      const tmpRoot = path.join(this.tmp, `${digest}.${randomBytes(6).toString('hex')}.root`);
      running = resolver
        .resolveVersion(spec, tmpRoot)
        .then(({ root }) => {
          if (root !== tmpRoot) throw new Error(`the ${kind} resolver made its root outside ${tmpRoot}`);
          const total = treeBytes(tmpRoot);
          this.makeRoom(total);
          fs.writeFileSync(
            path.join(this.roots, `${digest}.${META}`),
            JSON.stringify({ kind, bytes: total, byVersion: true }),
          );
          fs.renameSync(tmpRoot, path.join(this.roots, digest));
          this.entries.set(digest, { kind, bytes: total, lastUsedMs: Date.now(), users: 0 });
        })
        .catch((err: Error) => {
          fs.rmSync(tmpRoot, { recursive: true, force: true });
          if (!(err instanceof KilnError && err.code.startsWith('KILN_ERR_RESOLVER'))) throw err;
          const error = KILN_ERR_DIST_TOOLCHAIN_UNAVAILABLE(err.message);
          this.refusals.set(digest, { error, untilMs: Date.now() + REFUSAL_MEMORY_MS });
          throw error;
        })
        .finally(() => this.pending.delete(digest));
      this.pending.set(digest, running);
    }
    await running;
  }

  /** The root of a stored toolchain, held until `release` is called. */
  acquire(digest: string): { root: string; release: () => void } {
    const entry = this.entries.get(digest);
    if (!entry) throw KILN_ERR_DIST_TOOLCHAIN_MISSING(digest);
    entry.users++;
    entry.lastUsedMs = Date.now();
    let released = false;
    return {
      root: path.join(this.roots, digest),
      release: () => {
        if (!released) entry.users--;
        released = true;
      },
    };
  }

  private makeRoom(incoming: number): void {
    const victims = [...this.entries]
      .filter(([, e]) => e.users === 0)
      .sort(([, a], [, b]) => a.lastUsedMs - b.lastUsedMs);
    let used = this.bytesUsed();
    for (const [digest, entry] of victims) {
      if (used + incoming <= this.maxBytes) break;
      this.entries.delete(digest);
      fs.rmSync(path.join(this.roots, digest), { recursive: true, force: true });
      fs.rmSync(path.join(this.roots, `${digest}.${META}`), { force: true });
      fs.rmSync(path.join(this.archives, digest), { force: true });
      used -= entry.bytes;
    }
  }
}
