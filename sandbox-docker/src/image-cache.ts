/**
 * One image per toolchain, imported from the materialised toolchain directory (no registry needed),
 * tagged by its digest and labelled with the worker and the architecture. Images this worker
 * imported are removed least recently used first once together they pass `image_cache_size`.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { create as createTar } from 'tar';
import { type EngineClient, EngineError, readAll } from './engine-client.js';

export const LABEL_WORKER = 'dev.kiln.worker';
export const LABEL_TOOLCHAIN = 'dev.kiln.toolchain';
export const LABEL_ARCH = 'dev.kiln.arch';
export const REPOSITORY = 'kiln-toolchain';

export interface ImageCacheOptions {
  readonly workerId: string;
  readonly hostTriple: string;
  readonly maxBytes: number;
  /** Images whose containers are in use cannot go; asks the pool to let go of idle ones first. */
  readonly release: (imageId: string) => Promise<boolean>;
}

/** A toolchain's key: its digest when the store names roots by digest, else a hash of its path and inode. */
async function toolchainKey(root: string): Promise<string> {
  const base = path.basename(root);
  if (/^[0-9a-f]{16,}$/.test(base)) return base.slice(0, 64);
  const st = await fs.stat(root);
  return createHash('sha256').update(`${root}\0${st.ino}\0${st.mtimeMs}`).digest('hex');
}

/** A tag component Docker accepts ([A-Za-z0-9_.-], at most 128), distinct per worker id. */
function workerTag(id: string): string {
  const clean = id
    .toLowerCase()
    .replace(/[^a-z0-9_.-]/g, '-')
    .slice(0, 40);
  return clean === id ? clean : `${clean}-${createHash('sha256').update(id).digest('hex').slice(0, 8)}`;
}

export interface ImageSummary {
  Id: string;
  Size: number;
  Created: number;
  Labels?: Record<string, string> | null;
}

export class ImageCache {
  readonly #ids = new Map<string, Promise<string>>();
  readonly #lastUsed = new Map<string, number>();
  /** Toolchain key → image id, once known. */
  readonly #known = new Map<string, string>();

  constructor(
    private readonly engine: EngineClient,
    private readonly o: ImageCacheOptions,
  ) {}

  get #filter(): string {
    return encodeURIComponent(JSON.stringify({ label: [`${LABEL_WORKER}=${this.o.workerId}`] }));
  }

  /** The image for a toolchain root, imported on first use. Rejects when the engine fails. */
  async imageFor(toolchainRoot: string): Promise<string> {
    const key = await toolchainKey(toolchainRoot);
    let id = this.#ids.get(key);
    if (!id) {
      id = this.#find(key, toolchainRoot);
      this.#ids.set(key, id);
      // A failed import is tried again by the next job (the engine may come back).
      id.catch(() => this.#ids.delete(key));
    }
    const imageId = await id;
    this.#known.set(key, imageId);
    this.#lastUsed.set(imageId, Date.now());
    return imageId;
  }

  /** Forgets what it knows of the engine's images (it restarted or lost them). */
  forget(): void {
    this.#ids.clear();
    this.#known.clear();
  }

  async #find(key: string, root: string): Promise<string> {
    const ref = `${REPOSITORY}:${workerTag(this.o.workerId)}-${key.slice(0, 64)}`;
    try {
      const found = (await this.engine.json('GET', `/images/${ref}/json`)) as {
        Id: string;
        Config?: { Labels?: Record<string, string> };
      };
      if (found.Config?.Labels?.[LABEL_WORKER] === this.o.workerId) return found.Id;
    } catch (err) {
      if (!(err instanceof EngineError && err.status === 404)) throw err;
    }
    const id = await this.#import(ref, key, root);
    this.#lastUsed.set(id, Date.now());
    await this.prune().catch(() => {});
    return id;
  }

  async #import(ref: string, key: string, root: string): Promise<string> {
    const [repo, tag] = ref.split(':') as [string, string];
    const labels = [
      `${LABEL_WORKER}=${JSON.stringify(this.o.workerId)}`,
      `${LABEL_TOOLCHAIN}=${key}`,
      `${LABEL_ARCH}=${this.o.hostTriple}`,
    ];
    const query = new URLSearchParams({ fromSrc: '-', repo, tag, changes: `LABEL ${labels.join(' ')}` });
    // Owners and modes as materialised; the container's root file system is read-only anyway.
    const tar = createTar({ cwd: root, portable: false }, ['.']);
    const res = await this.engine.send('POST', `/images/create?${query}`, {
      stream: Readable.from(tar as AsyncIterable<Buffer>),
      timeoutMs: 600_000,
    });
    const text = (await readAll(res)).toString('utf8');
    let id: string | undefined;
    for (const line of text.split('\n')) {
      if (!line.trim()) continue;
      let msg: { status?: string; error?: string; message?: string };
      try {
        msg = JSON.parse(line);
      } catch {
        continue;
      }
      if (msg.error || msg.message)
        throw new Error(`importing ${root} as ${ref}: ${msg.error ?? msg.message}`);
      if (msg.status?.startsWith('sha256:')) id = msg.status;
    }
    if ((res.statusCode ?? 500) >= 400 || !id)
      throw new Error(`importing ${root} as ${ref}: ${res.statusCode} ${text.slice(0, 300)}`);
    return id;
  }

  /** The images this worker imported, with their sizes. */
  async list(): Promise<ImageSummary[]> {
    return (await this.engine.json('GET', `/images/json?filters=${this.#filter}`)) as ImageSummary[];
  }

  /** Removes least recently used images past max bytes; an image a running job uses stays. */
  async prune(): Promise<string[]> {
    const images = await this.list();
    let total = images.reduce((n, i) => n + i.Size, 0);
    const used = (i: ImageSummary) => this.#lastUsed.get(i.Id) ?? i.Created * 1000;
    const removed: string[] = [];
    for (const image of images.sort((a, b) => used(a) - used(b))) {
      if (total <= this.o.maxBytes) break;
      if (!(await this.o.release(image.Id))) continue;
      try {
        await this.engine.json('DELETE', `/images/${image.Id}?force=false&noprune=false`);
      } catch (err) {
        if (err instanceof EngineError && err.status === 409) continue; // still used by a container
        throw err;
      }
      total -= image.Size;
      removed.push(image.Id);
      this.#lastUsed.delete(image.Id);
      for (const [k, v] of this.#known) {
        if (v !== image.Id) continue;
        this.#known.delete(k);
        this.#ids.delete(k);
      }
    }
    return removed;
  }
}
