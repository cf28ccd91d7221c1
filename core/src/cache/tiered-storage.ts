/**
 * The local disk followed by remote tiers, in the configured order. A read takes the first tier
 * that has the entry and copies it into the tiers before it in the background; a write goes to
 * the disk at once and to every writable remote tier in the background. Remote failures are
 * misses, counted per tier (see RemoteTier); the build never waits on them beyond one deadline.
 */
import type { Logger } from '../log.js';
import type { Stats } from '../stats/stats.js';
import type { DiskStorage } from './disk-storage.js';
import { RemoteTier } from './remote/tier.js';
import type { RemoteTierConfig } from './remote/tier-config.js';
import type { EntryKind, Storage } from './storage.js';

export interface TierSize {
  readonly label: string;
  readonly readOnly: boolean;
  /** Bytes held, when the backend can tell. */
  readonly size: number | undefined;
}

export class TieredStorage implements Storage {
  readonly remotes: readonly RemoteTier[];
  /** Backfills to the local disk still being written. */
  private readonly copies = new Set<Promise<void>>();

  constructor(
    readonly local: DiskStorage,
    configs: readonly RemoteTierConfig[],
    stats: Stats,
    private readonly log: Logger,
    env: Readonly<Record<string, string | undefined>> = process.env,
  ) {
    this.remotes = configs.map((c) => new RemoteTier(c, stats, log, env));
  }

  async get(kind: EntryKind, key: string): Promise<Buffer | undefined> {
    const hit = this.local.getSync(kind, key);
    if (hit) return hit;
    for (const [i, tier] of this.remotes.entries()) {
      const data = await tier.get(kind, key);
      if (!data) continue;
      // Copied to the faster tiers after the answer, so the hit is not delayed by it.
      setImmediate(() => {
        const copy = this.local
          .putInBackground(kind, key, data)
          .catch((err: Error) =>
            this.log.warn(`cannot copy ${kind}/${key} to the local cache: ${err.message}`),
          )
          .finally(() => this.copies.delete(copy));
        this.copies.add(copy);
        for (const earlier of this.remotes.slice(0, i)) earlier.put(kind, key, data, true);
      });
      return data;
    }
    return undefined;
  }

  async put(kind: EntryKind, key: string, data: Buffer): Promise<void> {
    for (const tier of this.remotes) tier.put(kind, key, data);
    this.local.putSync(kind, key, data);
  }

  async exists(kind: EntryKind, key: string): Promise<boolean> {
    if (await this.local.exists(kind, key)) return true;
    for (const tier of this.remotes) if (await tier.exists(kind, key)) return true;
    return false;
  }

  async remove(kind: EntryKind, key: string): Promise<void> {
    await this.local.remove(kind, key);
    for (const tier of this.remotes) tier.remove(kind, key);
  }

  /** Each remote tier with its size where the backend can tell (for `kiln --show-stats`). */
  async sizes(): Promise<TierSize[]> {
    return Promise.all(
      this.remotes.map(async (t) => ({ label: t.label, readOnly: !t.writable, size: await t.size() })),
    );
  }

  /** Waits up to `ms` for background writes to the remote tiers; true when all are done. */
  async flush(ms: number): Promise<boolean> {
    await new Promise((r) => setImmediate(r));
    await Promise.allSettled([...this.copies]);
    const done = await Promise.all(this.remotes.map((t) => t.flush(ms)));
    return done.every(Boolean);
  }

  async close(): Promise<void> {
    await Promise.all(this.remotes.map((t) => t.close()));
  }
}
