/**
 * Fairness between clients within a pool (icecream#628: one client with cross toolchains for
 * another architecture filled a pool and starved that pool's own clients). The scheduler keeps no
 * queue, so "waiting" means "asked lately": a client that already holds its share of a pool's
 * slots leaves the last free ones to the clients that asked lately and hold less than theirs.
 * Pure bookkeeping, like ArchPoolScheduler.
 */

/** A client counts as wanting a pool for this long after it last asked for it. */
const ACTIVE_MS = 10_000;
/** Clients remembered per pool; past it the least recent go (a bound on client-chosen names). */
const MAX_CLIENTS = 1000;

export class FairShare {
  /** Per pool, the clients that asked for it, with when they last did (least recent first). */
  private readonly asked = new Map<string, Map<string, number>>();
  /** Jobs running, with their client and pool. */
  private readonly jobs = new Map<string, { readonly client: string; readonly pool: string }>();
  /** Per pool, the jobs each client holds there (kept as jobs start and end, so asking is cheap). */
  private readonly held = new Map<string, Map<string, number>>();

  constructor(private readonly now: () => number) {}

  /** Notes that `client` asked for a slot in `pool` now. */
  ask(client: string, pool: string): void {
    let clients = this.asked.get(pool);
    if (!clients) {
      clients = new Map();
      this.asked.set(pool, clients);
    }
    clients.delete(client);
    clients.set(client, this.now());
    for (const [c, at] of clients) {
      if (clients.size <= MAX_CLIENTS && this.now() - at <= ACTIVE_MS) break;
      clients.delete(c);
    }
  }

  /**
   * Whether `client` should leave the pool's `free` slots (of `slots`) to others: it holds its
   * share (the slots split evenly among the clients that asked lately) or more, and the free slots
   * do not exceed the number of other such clients below their share.
   */
  yields(client: string, pool: string, slots: number, free: number): boolean {
    const now = this.now();
    const active = [...(this.asked.get(pool) ?? [])]
      .filter(([, at]) => now - at <= ACTIVE_MS)
      .map(([c]) => c);
    if (active.length < 2) return false;
    const share = Math.max(1, Math.floor(slots / active.length));
    const held = this.held.get(pool) ?? new Map<string, number>();
    if ((held.get(client) ?? 0) < share) return false;
    const below = active.filter((c) => c !== client && (held.get(c) ?? 0) < share).length;
    return free <= below;
  }

  /** A job was assigned to `client` in `pool`. */
  start(jobId: string, client: string, pool: string): void {
    this.jobs.set(jobId, { client, pool });
    let held = this.held.get(pool);
    if (!held) {
      held = new Map();
      this.held.set(pool, held);
    }
    held.set(client, (held.get(client) ?? 0) + 1);
  }

  /** The job ended (or was lost): its client and pool, if it was known. */
  end(jobId: string): { readonly client: string; readonly pool: string } | undefined {
    const job = this.jobs.get(jobId);
    if (!job) return undefined;
    this.jobs.delete(jobId);
    const held = this.held.get(job.pool)!;
    const n = held.get(job.client)! - 1;
    if (n > 0) held.set(job.client, n);
    else held.delete(job.client);
    if (held.size === 0) this.held.delete(job.pool);
    return job;
  }
}
