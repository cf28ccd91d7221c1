/** What a worker's /metrics reports; README "Operating the cluster" lists the names. */
import type { SandboxResult } from '@kiln/plugins';
import { MetricsRegistry } from '../metrics.js';

export function workerMetrics(opts: {
  readonly id: string;
  readonly pool: string;
  readonly version: string;
  readonly maxJobs: number;
  /** Jobs held now: an upload or a run in flight. */
  readonly running: () => number;
}) {
  const registry = new MetricsRegistry();
  registry.gauge('kiln_worker_info', 'The worker id, pool (host triple) and version, as labels.', () => [
    [{ worker: opts.id, pool: opts.pool, version: opts.version }, 1],
  ]);
  registry.gauge('kiln_worker_slots', 'max_jobs: jobs this worker runs at once.', () => [[{}, opts.maxJobs]]);
  registry.gauge('kiln_worker_running_jobs', 'Jobs with an upload or a run in flight.', () => [
    [{}, opts.running()],
  ]);
  const jobs = registry.counter(
    'kiln_worker_jobs_total',
    'Jobs run, by outcome: ok, compile_error (the compiler said no), timed_out, limit_exceeded, sandbox_error.',
  );
  const sandboxFailures = registry.counter(
    'kiln_worker_sandbox_failures_total',
    'Jobs the sandbox could not run at all (the client compiles them locally).',
  );
  const duration = registry.histogram('kiln_worker_job_duration_seconds', 'Time a job ran in the sandbox.');
  const m = {
    registry,
    uploads: registry.counter(
      'kiln_worker_toolchain_uploads_total',
      'Toolchain archives received and stored.',
    ),
    uploadBytes: registry.counter(
      'kiln_worker_toolchain_upload_bytes_total',
      'Bytes of toolchain archives received and stored.',
    ),
    inputBytes: registry.counter(
      'kiln_worker_job_input_bytes_total',
      'Bytes of job requests received (their header and input files).',
    ),
    /** Runs a job in the sandbox, counting how it went. */
    async timed(run: () => Promise<SandboxResult>): Promise<SandboxResult> {
      const started = performance.now();
      let result: SandboxResult;
      try {
        result = await run();
      } catch (err) {
        sandboxFailures.inc();
        jobs.inc({ outcome: 'sandbox_error' });
        throw err;
      }
      duration.observe((performance.now() - started) / 1000);
      const outcome = result.timedOut
        ? 'timed_out'
        : result.limitExceeded
          ? 'limit_exceeded'
          : result.exitCode === 0 && !result.signal
            ? 'ok'
            : 'compile_error';
      jobs.inc({ outcome });
      return result;
    },
  };
  return m;
}
