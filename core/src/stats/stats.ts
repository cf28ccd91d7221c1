import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

export interface StatsData {
  /** Compiler calls seen, cacheable or not. */
  requests: number;
  hitsDirect: number;
  hitsPreprocessed: number;
  misses: number;
  /** Calls run unchanged, by reason (linking, -E, multiple source files…). */
  nonCacheable: Record<string, number>;
  /** Cacheable calls whose compile failed: the user's code, not kiln. */
  compileFailed: number;
  /** Things that went wrong inside kiln, by kind; each one ended in a correct local compile. */
  errors: Record<string, number>;
  /** Compiles that ran on a worker, by worker id. */
  distCompiles: Record<string, number>;
  /** Distributed compiles that failed on the way and were compiled locally instead, by reason. */
  distErrors: Record<string, number>;
  /** Cacheable misses kept local by choice (no capacity, conftest, toolchain still packaging), by reason. */
  distLocal: Record<string, number>;
  /**
   * Jobs whose worker died or broke under them, tried once more on another worker: `retried`, then
   * `succeeded` there or `compiled locally`.
   */
  distRetries: Record<string, number>;
  /**
   * Calls under `base_dir` whose entry is kept to its own directory, by reason (the output names
   * the directory, -g without prefix maps, sanitizers…). They are cached all the same.
   */
  baseDir: Record<string, number>;
  /** Per language group (C, C++, Rust, CUDA…): hits, misses, failed compiles, calls not cached. */
  languages: Record<string, LanguageCounts>;
  /** Per remote cache tier, by its label (`redis://host:6379/0`, with the namespace). */
  tiers: Record<string, TierCounts>;
  since: string;
}

/** What happened on one remote tier. Every failure ended as a miss (reads) or a skipped write. */
export interface TierCounts {
  hits: number;
  misses: number;
  /** Entries stored there (a miss compiled here, or a backfill). */
  writes: number;
  /** Of those writes, the ones that copied a hit from a later tier to this one. */
  backfills: number;
  bytesRead: number;
  bytesWritten: number;
  /** Operations that failed (refused, wrong password, no such bucket…), reads and writes. */
  errors: number;
  /** Operations cut at `operation_timeout_ms`. */
  timeouts: number;
  /** Entries found damaged (checksum, truncation): misses. */
  corrupt: number;
  /** Entries written by another kiln format, or with a codec this Node lacks: misses. */
  otherFormat: number;
  /** Operations not tried because the tier was backing off after failures, or disabled. */
  skipped: number;
  /** Writes dropped because too many bytes were waiting to be written. */
  dropped: number;
}
export type TierOutcome = keyof TierCounts;

export const emptyTierCounts = (): TierCounts => ({
  hits: 0,
  misses: 0,
  writes: 0,
  backfills: 0,
  bytesRead: 0,
  bytesWritten: 0,
  errors: 0,
  timeouts: 0,
  corrupt: 0,
  otherFormat: 0,
  skipped: 0,
  dropped: 0,
});

export interface LanguageCounts {
  hits: number;
  misses: number;
  failed: number;
  uncached: number;
}
export type LanguageOutcome = keyof LanguageCounts;

export const emptyStats = (): StatsData => ({
  requests: 0,
  hitsDirect: 0,
  hitsPreprocessed: 0,
  misses: 0,
  nonCacheable: {},
  compileFailed: 0,
  errors: {},
  distCompiles: {},
  distErrors: {},
  distLocal: {},
  distRetries: {},
  baseDir: {},
  languages: {},
  tiers: {},
  since: new Date().toISOString(),
});

function addInto(target: StatsData, delta: StatsData): StatsData {
  target.requests += delta.requests;
  target.hitsDirect += delta.hitsDirect;
  target.hitsPreprocessed += delta.hitsPreprocessed;
  target.misses += delta.misses;
  target.compileFailed += delta.compileFailed;
  for (const [k, v] of Object.entries(delta.nonCacheable))
    target.nonCacheable[k] = (target.nonCacheable[k] ?? 0) + v;
  for (const [k, v] of Object.entries(delta.errors)) target.errors[k] = (target.errors[k] ?? 0) + v;
  for (const field of ['distCompiles', 'distErrors', 'distLocal', 'distRetries', 'baseDir'] as const) {
    target[field] ??= {};
    const into = target[field];
    for (const [k, v] of Object.entries(delta[field] ?? {})) into[k] = (into[k] ?? 0) + v;
  }
  target.languages ??= {};
  for (const [lang, counts] of Object.entries(delta.languages ?? {})) {
    target.languages[lang] ??= { hits: 0, misses: 0, failed: 0, uncached: 0 };
    const into = target.languages[lang];
    for (const k of ['hits', 'misses', 'failed', 'uncached'] as const) into[k] += counts[k] ?? 0;
  }
  target.tiers ??= {};
  for (const [label, counts] of Object.entries(delta.tiers ?? {})) {
    target.tiers[label] ??= emptyTierCounts();
    const into = target.tiers[label];
    for (const k of Object.keys(into) as TierOutcome[]) into[k] += counts[k] ?? 0;
  }
  return target;
}

function isStats(value: unknown): value is StatsData {
  const v = value as StatsData;
  return (
    typeof v === 'object' &&
    v !== null &&
    typeof v.requests === 'number' &&
    typeof v.nonCacheable === 'object' &&
    typeof v.errors === 'object'
  );
}

/**
 * Counters kept in memory and added to `<cacheDir>/stats.json` on flush, so they survive daemon
 * restarts and several daemons sharing a cache dir add up instead of overwriting each other.
 */
export class Stats {
  private delta = emptyStats();
  private readonly file: string;

  constructor(cacheDir: string) {
    this.file = path.join(cacheDir, 'stats.json');
  }

  get pending(): Readonly<StatsData> {
    return this.delta;
  }

  count(field: 'requests' | 'hitsDirect' | 'hitsPreprocessed' | 'misses' | 'compileFailed'): void {
    this.delta[field]++;
  }

  nonCacheable(reason: string): void {
    this.delta.nonCacheable[reason] = (this.delta.nonCacheable[reason] ?? 0) + 1;
  }

  error(kind: string): void {
    this.delta.errors[kind] = (this.delta.errors[kind] ?? 0) + 1;
  }

  /** One call's outcome, counted under its language group. */
  language(group: string, outcome: LanguageOutcome): void {
    this.delta.languages[group] ??= { hits: 0, misses: 0, failed: 0, uncached: 0 };
    this.delta.languages[group][outcome]++;
  }

  /** Adds `n` to one counter of the remote tier `label`. */
  tier(label: string, outcome: TierOutcome, n = 1): void {
    this.delta.tiers[label] ??= emptyTierCounts();
    this.delta.tiers[label][outcome] += n;
  }

  /** A call under base_dir whose entry is not shared with other directories, and why. */
  baseDir(reason: string): void {
    this.delta.baseDir[reason] = (this.delta.baseDir[reason] ?? 0) + 1;
  }

  dist(field: 'distCompiles' | 'distErrors' | 'distLocal' | 'distRetries', key: string): void {
    this.delta[field][key] = (this.delta[field][key] ?? 0) + 1;
  }

  /** What this instance counted since the last take or flush, handed over and forgotten here. */
  take(): StatsData {
    const delta = this.delta;
    this.delta = emptyStats();
    return delta;
  }

  /** Counts another process's delta (a hit worker's `take()`) as this one's. */
  add(delta: StatsData): void {
    if (isStats(delta)) addInto(this.delta, delta);
  }

  private readPersisted(): StatsData {
    try {
      const parsed: unknown = JSON.parse(fs.readFileSync(this.file, 'utf8'));
      if (isStats(parsed)) return { ...emptyStats(), ...parsed };
    } catch {
      // Missing or damaged: start counting afresh rather than fail.
    }
    return emptyStats();
  }

  private write(data: StatsData): void {
    fs.mkdirSync(path.dirname(this.file), { recursive: true });
    const tmp = `${this.file}.${process.pid}.${randomBytes(4).toString('hex')}`;
    try {
      fs.writeFileSync(tmp, JSON.stringify(data, null, 1));
      fs.renameSync(tmp, this.file);
    } catch (err) {
      fs.rmSync(tmp, { force: true });
      throw err;
    }
  }

  /** The persisted totals plus what this process has not flushed yet. */
  snapshot(): StatsData {
    return addInto(this.readPersisted(), this.delta);
  }

  /** Adds pending counts to the file. Throws when the cache dir is not writable; counts are kept. */
  flush(): void {
    if (
      this.delta.requests === 0 &&
      Object.keys(this.delta.errors).length === 0 &&
      Object.keys(this.delta.tiers).length === 0
    )
      return;
    this.write(addInto(this.readPersisted(), this.delta));
    this.delta = emptyStats();
  }

  zero(): void {
    this.delta = emptyStats();
    this.write(emptyStats());
  }
}
