/**
 * Results and manifests on top of a Storage: what every compiler front end (gcc/clang, rustc,
 * nvcc) stores and how it reads it back. A damaged entry is removed and reported as a miss.
 */
import type { Logger } from '../log.js';
import type { Stats } from '../stats/stats.js';
import { EnvelopeKind, open, seal } from './envelope.js';
import { EntryKind, type Storage } from './storage.js';

/** Manifests keep the most recent entries: old header sets rarely come back. */
const MAX_MANIFEST_ENTRIES = 32;

interface ResultHeader {
  readonly exitCode: number;
  /** One name per blob after stdout and stderr: object, dep, dwo, rlib… */
  readonly files: readonly string[];
  /** Front-end facts needed to replay the entry elsewhere (rustc: the output directory). */
  readonly meta?: Readonly<Record<string, string>>;
}

export interface CachedResult {
  readonly stdout: Buffer;
  readonly stderr: Buffer;
  readonly files: ReadonlyMap<string, Buffer>;
  readonly meta: Readonly<Record<string, string>>;
}

/**
 * One way a direct key was compiled before: the files it read with their digests, the environment
 * variables it read (a digest of the value, null when unset), and the result they led to.
 */
export interface ManifestEntry {
  readonly files: readonly (readonly [string, string])[];
  /**
   * Include directories with their stat stamp when the entry was made: a file added to one (a
   * header that would shadow a later directory's) changes the stamp, and the entry stops matching.
   */
  readonly dirs?: readonly (readonly [string, string])[];
  readonly env?: readonly (readonly [string, string | null])[];
  readonly result: string;
}

interface ManifestHeader {
  readonly entries: readonly ManifestEntry[];
}

export class CacheEntries {
  constructor(
    private readonly storage: Storage,
    private readonly stats: Stats,
    private readonly log: Logger,
  ) {}

  /** Stores a successful compile's streams and files; a failure to write is counted, never thrown. */
  async putResult(
    key: string,
    stdout: Buffer,
    stderr: Buffer,
    files: readonly (readonly [string, Buffer])[],
    meta?: Record<string, string>,
  ): Promise<void> {
    const header: ResultHeader = { exitCode: 0, files: files.map(([kind]) => kind), ...(meta && { meta }) };
    try {
      await this.storage.put(
        EntryKind.RESULT,
        key,
        seal(EnvelopeKind.RESULT, header, [stdout, stderr, ...files.map(([, data]) => data)]),
      );
    } catch (err) {
      this.stats.error('cache write');
      this.log.warn(`cannot store ${key}: ${(err as Error).message}`);
    }
  }

  async readResult(key: string): Promise<CachedResult | undefined> {
    const data = await this.storage.get(EntryKind.RESULT, key);
    if (!data) return undefined;
    const env = open<ResultHeader>(EnvelopeKind.RESULT, data);
    if (!env || !Array.isArray(env.header.files) || env.blobs.length !== env.header.files.length + 2) {
      this.stats.error('corrupt entry');
      this.log.warn(`removing corrupt result ${key}`);
      await this.storage.remove(EntryKind.RESULT, key);
      return undefined;
    }
    const files = new Map<string, Buffer>();
    for (const [i, kind] of env.header.files.entries()) files.set(kind, env.blobs[i + 2]!);
    return { stdout: env.blobs[0]!, stderr: env.blobs[1]!, files, meta: env.header.meta ?? {} };
  }

  /** The manifest's entries, newest first; undefined when there is none (or it was damaged). */
  async readManifest(key: string): Promise<readonly ManifestEntry[] | undefined> {
    const data = await this.storage.get(EntryKind.MANIFEST, key);
    if (!data) return undefined;
    const env = open<ManifestHeader>(EnvelopeKind.MANIFEST, data);
    if (!env || !Array.isArray(env.header.entries)) {
      this.stats.error('corrupt entry');
      await this.storage.remove(EntryKind.MANIFEST, key);
      return undefined;
    }
    return env.header.entries;
  }

  /** Puts `entry` first, dropping an older entry for the same result and the oldest beyond the limit. */
  async addManifestEntry(key: string, entry: ManifestEntry): Promise<void> {
    const old = (await this.readManifest(key)) ?? [];
    await this.putManifest(
      key,
      [entry, ...old.filter((e) => e.result !== entry.result)].slice(0, MAX_MANIFEST_ENTRIES),
    );
  }

  async putManifest(key: string, entries: readonly ManifestEntry[]): Promise<void> {
    try {
      await this.storage.put(EntryKind.MANIFEST, key, seal(EnvelopeKind.MANIFEST, { entries }, []));
    } catch (err) {
      this.stats.error('cache write');
      this.log.warn(`cannot store manifest: ${(err as Error).message}`);
    }
  }
}
