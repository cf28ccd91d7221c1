/**
 * The scheduler's state: one pool of workers per host triple, the jobs each one holds, and the
 * allocation rule. Pure bookkeeping (no I/O) so it can be tested and benchmarked on its own.
 */
import { randomBytes } from 'node:crypto';
import type { ClusterStatus, JobState, PoolStatus, ToolchainRef, WorkerHeartbeat } from '../api.js';
import { FairShare } from './fair-share.js';

/** How many ended jobs the status keeps for "recent jobs". */
const RECENT_JOBS = 20;
/** Host triples counted one by one in the per-pool counts; past it (client input), as `other`. */
const MAX_COUNTED_POOLS = 64;
/** A failure without a reason of the scheduler's own was reported by the worker. */
const REPORTED_FAILED = 'the worker reported it failed (sandbox error, or the client went away)';

export interface WorkerEntry {
  info: WorkerHeartbeat;
  toolchains: Set<string>;
  /** Jobs assigned here and not reported finished, with their assignment time. */
  jobs: Map<string, number>;
  lastSeenMs: number;
  /** Jobs that ended here since the worker joined, and the last failure. */
  finished: number;
  failed: number;
  lastFailure?: { jobId: string; reason: string; endedMs: number };
  /** The worker signed off: out of its pool, kept only until its running jobs are reported finished. */
  leaving?: boolean;
}

/** What is remembered of a job that ended: assigned jobs live only in their worker's `jobs`. */
interface EndedJob {
  readonly workerId: string;
  readonly state: Exclude<JobState, 'assigned'>;
  readonly reason?: string;
  readonly endedMs: number;
}

export type Allocation =
  | {
      readonly ok: true;
      readonly jobId: string;
      readonly worker: WorkerEntry;
      readonly hasToolchain: boolean;
    }
  | { readonly ok: false; readonly reason: string; readonly noWorker: boolean };

/** Finished and failed jobs are remembered this long, so clients can ask what happened. */
const JOB_MEMORY_MS = 10 * 60_000;
const MAX_ENDED_JOBS = 100_000;

export class ArchPoolScheduler {
  private readonly pools = new Map<string, Map<string, WorkerEntry>>();
  private readonly workers = new Map<string, WorkerEntry>();
  /**
   * In the order they ended, so the oldest are first to go. Only ended jobs are kept here: a record
   * per assigned job too doubled the scheduler's memory per running job.
   */
  private readonly ended = new Map<string, EndedJob>();
  private readonly startedMs = Date.now();
  /** The last RECENT_JOBS ended jobs, oldest first. */
  private readonly recent: {
    jobId: string;
    workerId: string;
    client?: string;
    hostTriple?: string;
    state: 'finished' | 'failed';
    reason?: string;
    durationMs: number;
    endedMs: number;
  }[] = [];
  private counters = { allocations: 0, noCapacity: 0, lostJobs: 0 };
  /** Per host triple asked for: jobs assigned there and requests answered "no capacity". */
  private readonly poolCounts = new Map<string, { allocations: number; noCapacity: number }>();
  private readonly fair = new FairShare(() => this.now());

  constructor(
    private readonly opts: {
      /** A worker not heard from for this long leaves its pool. */
      readonly workerTimeoutMs: number;
      /** An assigned job the worker never mentions stops counting as load after this long. */
      readonly assignTimeoutMs: number;
      readonly version: string;
      readonly hostTriple?: string;
      readonly now?: () => number;
      /** Past this many ended jobs the oldest are forgotten before JOB_MEMORY_MS (default 100,000). */
      readonly maxEndedJobs?: number;
      /** Told of every job that ends: its worker's pool, how it ended, ms since it was assigned. */
      readonly onJobEnded?: (pool: string, state: 'finished' | 'failed', heldMs: number) => void;
    },
  ) {}

  private now(): number {
    return this.opts.now?.() ?? Date.now();
  }

  /** Registers a worker or refreshes it; a worker that moved to another triple changes pool. */
  heartbeat(info: WorkerHeartbeat): void {
    const now = this.now();
    let entry = this.workers.get(info.id);
    // A heartbeat that was on its way when the worker signed off does not bring it back; the same
    // id started again (a new job key) does.
    if (entry?.leaving) {
      if (entry.info.jobKey === info.jobKey) return;
      entry.leaving = false;
    }
    if (entry && entry.info.hostTriple !== info.hostTriple) {
      this.pools.get(entry.info.hostTriple)?.delete(info.id);
    }
    if (!entry) {
      entry = { info, toolchains: new Set(), jobs: new Map(), lastSeenMs: now, finished: 0, failed: 0 };
      this.workers.set(info.id, entry);
    }
    entry.info = info;
    entry.lastSeenMs = now;
    entry.toolchains = new Set(info.toolchains);
    // The worker's own list is the truth for jobs it holds; ones it never saw expire. Jobs the
    // scheduler did not assign (it restarted) are taken on only up to the worker's max_jobs.
    const held = new Set(info.runningJobs);
    for (const jobId of held) {
      if (!entry.jobs.has(jobId) && entry.jobs.size < info.maxJobs) entry.jobs.set(jobId, now);
    }
    for (const [jobId, since] of entry.jobs) {
      if (!held.has(jobId) && now - since > this.opts.assignTimeoutMs)
        this.finish(jobId, info.id, true, 'never started');
    }
    let pool = this.pools.get(info.hostTriple);
    if (!pool) {
      pool = new Map();
      this.pools.set(info.hostTriple, pool);
    }
    pool.set(info.id, entry);
  }

  /** Removes workers that stopped heartbeating; their jobs are marked failed. Returns the ids removed. */
  expire(): string[] {
    const now = this.now();
    const gone: string[] = [];
    for (const [id, entry] of this.workers) {
      if (now - entry.lastSeenMs <= this.opts.workerTimeoutMs) continue;
      this.removeWorker(id, 'worker stopped heartbeating');
      gone.push(id);
    }
    // Oldest first: the scan stops at the first recent one.
    for (const [jobId, job] of this.ended) {
      if (now - job.endedMs <= JOB_MEMORY_MS) break;
      this.ended.delete(jobId);
    }
    return gone;
  }

  /** Remembers how a job ended, forgetting the oldest record past the cap. */
  private end(jobId: string, job: EndedJob): void {
    // Re-inserted, so that the order stays by end time.
    this.ended.delete(jobId);
    this.ended.set(jobId, job);
    if (this.ended.size > (this.opts.maxEndedJobs ?? MAX_ENDED_JOBS)) {
      this.ended.delete(this.ended.keys().next().value!);
    }
  }

  removeWorker(id: string, reason: string): void {
    const entry = this.workers.get(id);
    if (!entry) return;
    const now = this.now();
    for (const [jobId, since] of entry.jobs) {
      this.end(jobId, { workerId: id, state: 'failed', reason, endedMs: now });
      this.counters.lostJobs++;
      this.remember(entry, jobId, 'failed', reason, now - since, now);
      this.opts.onJobEnded?.(entry.info.hostTriple, 'failed', now - since);
    }
    this.workers.delete(id);
    const pool = this.pools.get(entry.info.hostTriple);
    if (pool?.get(id) === entry) pool.delete(id);
    if (pool?.size === 0) this.pools.delete(entry.info.hostTriple);
  }

  /**
   * A worker signing off (it was told to stop): out of its pool at once, so nothing new goes to it.
   * Its running jobs stay its own until it reports them finished, then it is forgotten; if it goes
   * silent first, `expire` ends them as for any lost worker. False for a worker not known here.
   */
  leave(id: string): boolean {
    const entry = this.workers.get(id);
    if (!entry) return false;
    entry.leaving = true;
    entry.lastSeenMs = this.now();
    const pool = this.pools.get(entry.info.hostTriple);
    if (pool?.get(id) === entry) pool.delete(id);
    if (pool?.size === 0) this.pools.delete(entry.info.hostTriple);
    if (entry.jobs.size === 0) this.workers.delete(id);
    return true;
  }

  worker(id: string): WorkerEntry | undefined {
    return this.workers.get(id);
  }

  private poolCount(triple: string) {
    const key = this.poolCounts.has(triple) || this.poolCounts.size < MAX_COUNTED_POOLS ? triple : 'other';
    let c = this.poolCounts.get(key);
    if (!c) {
      c = { allocations: 0, noCapacity: 0 };
      this.poolCounts.set(key, c);
    }
    return c;
  }

  /**
   * Picks a worker for a job: one whose pool can execute the toolchain and whose resolvers know its
   * kind, other than those in `exclude`; among those, one that already holds it, then the lowest
   * running jobs per core. `client` (a name, or its address) holding its share of a pool that
   * other clients asked for lately leaves them that pool's last free slots (FairShare).
   */
  allocate(toolchain: ToolchainRef, exclude: readonly string[] = [], client = ''): Allocation {
    let best: WorkerEntry | undefined;
    let bestHas = false;
    let bestLoad = Number.POSITIVE_INFINITY;
    let eligible = 0;
    let yielded = false;
    for (const triple of toolchain.hostTriples) {
      const pool = this.pools.get(triple);
      if (!pool) continue;
      const usable = [...pool.values()].filter((w) => w.info.resolvers.includes(toolchain.kind));
      eligible += usable.length;
      if (client && usable.length > 0) {
        this.fair.ask(client, triple);
        const slots = usable.reduce((n, w) => n + w.info.maxJobs, 0);
        const free = usable.reduce((n, w) => n + Math.max(0, w.info.maxJobs - w.jobs.size), 0);
        if (free > 0 && this.fair.yields(client, triple, slots, free)) {
          yielded = true;
          continue;
        }
      }
      for (const w of usable) {
        if (w.jobs.size >= w.info.maxJobs || exclude.includes(w.info.id)) continue;
        const has = w.toolchains.has(toolchain.digest);
        const load = w.jobs.size / w.info.cpus;
        if ((has && !bestHas) || (has === bestHas && load < bestLoad)) {
          best = w;
          bestHas = has;
          bestLoad = load;
        }
      }
    }
    if (!best) {
      this.counters.noCapacity++;
      this.poolCount(toolchain.hostTriples[0] ?? '').noCapacity++;
      const reason =
        eligible === 0
          ? `no worker can run a ${toolchain.kind} toolchain for ${toolchain.hostTriples.join(', ')}`
          : yielded
            ? 'fair share: other clients are waiting for this pool'
            : exclude.length > 0
              ? 'every other eligible worker is busy'
              : 'every eligible worker is busy';
      return { ok: false, reason, noWorker: eligible === 0 };
    }
    const jobId = randomBytes(12).toString('base64url');
    const now = this.now();
    best.jobs.set(jobId, now);
    this.counters.allocations++;
    this.poolCount(best.info.hostTriple).allocations++;
    if (client) this.fair.start(jobId, client, best.info.hostTriple);
    return { ok: true, jobId, worker: best, hasToolchain: bestHas };
  }

  /**
   * The worker finished (or gave up on) a job: its slot frees up. False for a job this worker does
   * not hold (unknown, another worker's, or ended already).
   */
  finish(jobId: string, workerId: string, failed: boolean, reason?: string): boolean {
    const entry = this.workers.get(workerId);
    const since = entry?.jobs.get(jobId);
    if (!entry || since === undefined) return false;
    entry.jobs.delete(jobId);
    const now = this.now();
    const state = failed ? 'failed' : 'finished';
    this.end(jobId, { workerId, state, endedMs: now, ...(reason ? { reason } : {}) });
    this.remember(entry, jobId, state, failed ? (reason ?? REPORTED_FAILED) : undefined, now - since, now);
    this.opts.onJobEnded?.(entry.info.hostTriple, state, now - since);
    if (entry.leaving && entry.jobs.size === 0) this.workers.delete(workerId);
    return true;
  }

  /** Counts an ended job on its worker and keeps it among the recent ones. */
  private remember(
    entry: WorkerEntry,
    jobId: string,
    state: 'finished' | 'failed',
    reason: string | undefined,
    durationMs: number,
    endedMs: number,
  ): void {
    if (state === 'failed') {
      entry.failed++;
      entry.lastFailure = { jobId, reason: reason ?? REPORTED_FAILED, endedMs };
    } else entry.finished++;
    const client = this.fair.end(jobId)?.client;
    this.recent.push({
      jobId,
      workerId: entry.info.id,
      ...(client ? { client } : {}),
      hostTriple: entry.info.hostTriple,
      state,
      ...(reason ? { reason } : {}),
      durationMs,
      endedMs,
    });
    if (this.recent.length > RECENT_JOBS) this.recent.shift();
  }

  /** A job's state; looking up a running one walks the workers (this is for diagnostics only). */
  job(jobId: string): { state: JobState; workerId: string; reason?: string } | undefined {
    const ended = this.ended.get(jobId);
    if (ended) {
      return {
        state: ended.state,
        workerId: ended.workerId,
        ...(ended.reason ? { reason: ended.reason } : {}),
      };
    }
    for (const w of this.workers.values()) {
      if (w.jobs.has(jobId)) return { state: 'assigned', workerId: w.info.id };
    }
    return undefined;
  }

  status(): ClusterStatus {
    const now = this.now();
    const pools: PoolStatus[] = [];
    for (const [hostTriple, pool] of [...this.pools].sort(([a], [b]) => a.localeCompare(b))) {
      const workers = [...pool.values()]
        .sort((a, b) => a.info.id.localeCompare(b.info.id))
        .map((w) => ({
          id: w.info.id,
          url: w.info.url,
          ...(w.info.certSha256 ? { certSha256: w.info.certSha256 } : {}),
          hostTriple: w.info.hostTriple,
          os: w.info.os,
          cpuModel: w.info.cpuModel,
          cpus: w.info.cpus,
          memoryBytes: w.info.memoryBytes,
          maxJobs: w.info.maxJobs,
          runningJobs: w.jobs.size,
          sandbox: w.info.sandbox,
          resolvers: w.info.resolvers,
          toolchains: w.toolchains.size,
          toolchainUploads: w.info.toolchainUploads,
          lastHeartbeatMsAgo: now - w.lastSeenMs,
          version: w.info.version,
          finishedJobs: w.finished,
          failedJobs: w.failed,
          ...(w.lastFailure
            ? {
                lastFailure: {
                  jobId: w.lastFailure.jobId,
                  reason: w.lastFailure.reason,
                  msAgo: now - w.lastFailure.endedMs,
                },
              }
            : {}),
        }));
      const sum = (f: (w: (typeof workers)[number]) => number) => workers.reduce((n, w) => n + f(w), 0);
      pools.push({
        hostTriple,
        workers,
        cpus: sum((w) => w.cpus),
        maxJobs: sum((w) => w.maxJobs),
        runningJobs: sum((w) => w.runningJobs),
        allocations: this.poolCounts.get(hostTriple)?.allocations ?? 0,
        noCapacity: this.poolCounts.get(hostTriple)?.noCapacity ?? 0,
      });
    }
    const unserved = [...this.poolCounts]
      .filter(([triple, c]) => !this.pools.has(triple) && c.noCapacity > 0)
      .map(([hostTriple, c]) => ({ hostTriple, noCapacity: c.noCapacity }))
      .sort((a, b) => a.hostTriple.localeCompare(b.hostTriple));
    const total = (f: (p: PoolStatus) => number) => pools.reduce((n, p) => n + f(p), 0);
    return {
      version: this.opts.version,
      schedulerHostTriple: this.opts.hostTriple ?? 'unknown',
      uptimeS: Math.round((now - this.startedMs) / 1000),
      totals: {
        workers: total((p) => p.workers.length),
        pools: pools.length,
        cpus: total((p) => p.cpus),
        maxJobs: total((p) => p.maxJobs),
        runningJobs: total((p) => p.runningJobs),
        ...this.counters,
      },
      pools,
      unserved,
      recentJobs: this.recent.map(({ endedMs, ...job }) => ({ ...job, endedMsAgo: now - endedMs })).reverse(),
    };
  }
}
