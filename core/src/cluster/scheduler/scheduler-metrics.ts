/** What the scheduler's /metrics reports; README "Operating the cluster" lists the names. */
import { BoundedLabel, type Labels, MetricsRegistry } from '../metrics.js';
import type { ArchPoolScheduler } from './arch-pools.js';

export function schedulerMetrics() {
  const registry = new MetricsRegistry();
  const m = {
    registry,
    /** Pools clients ask for that no worker serves are client input: bounded. */
    requested: new BoundedLabel(),
    allocations: registry.counter('kiln_scheduler_allocations_total', 'Jobs assigned to a worker, by pool.'),
    noCapacity: registry.counter(
      'kiln_scheduler_no_capacity_total',
      'Allocation requests answered no_capacity (the client compiles locally), by the pool asked for.',
    ),
    ended: registry.counter(
      'kiln_scheduler_jobs_ended_total',
      'Jobs that ended, by pool and state: finished, or failed (the worker gave up, or stopped heartbeating).',
    ),
    duration: registry.histogram(
      'kiln_scheduler_job_duration_seconds',
      'Time from assignment to the worker reporting the job ended, by pool.',
    ),
    expired: registry.counter(
      'kiln_scheduler_workers_expired_total',
      'Workers removed because they stopped heartbeating.',
    ),
    /** Gauges read the pools at each scrape. */
    watch(pools: ArchPoolScheduler, version: string) {
      const perPool = (f: (p: ReturnType<ArchPoolScheduler['status']>['pools'][number]) => number) =>
        function* (): Generator<readonly [Labels, number]> {
          for (const p of pools.status().pools) yield [{ pool: p.hostTriple }, f(p)];
        };
      registry.gauge('kiln_scheduler_info', 'The scheduler version, as a label.', () => [[{ version }, 1]]);
      registry.gauge('kiln_scheduler_uptime_seconds', 'Seconds since the scheduler started.', () => [
        [{}, pools.status().uptimeS],
      ]);
      registry.gauge(
        'kiln_scheduler_workers',
        'Workers heartbeating, by pool.',
        perPool((p) => p.workers.length),
      );
      registry.gauge(
        'kiln_scheduler_slots',
        'Job slots (max_jobs summed), by pool.',
        perPool((p) => p.maxJobs),
      );
      registry.gauge(
        'kiln_scheduler_running_jobs',
        'Jobs assigned and not ended, by pool: the pool is full when this reaches its slots.',
        perPool((p) => p.runningJobs),
      );
      registry.gauge(
        'kiln_scheduler_worker_running_jobs',
        'Jobs assigned and not ended, by worker.',
        function* () {
          for (const p of pools.status().pools)
            for (const w of p.workers) yield [{ pool: p.hostTriple, worker: w.id }, w.runningJobs] as const;
        },
      );
    },
  };
  return m;
}
