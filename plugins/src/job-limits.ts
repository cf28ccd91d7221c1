/** The resource limits every job runs under, set per worker (`[limits]` in worker.toml). */

/** Which limit a job ran into. */
export const LimitKind = {
  PROCESSES: 'processes',
  MEMORY: 'memory',
  DISK: 'disk',
  OUTPUT: 'output',
} as const;
export type LimitKind = (typeof LimitKind)[keyof typeof LimitKind];

export interface JobLimits {
  /** Processes and threads the job may have at once (Linux counts threads as processes). */
  readonly processes: number;
  /** Memory the job may use: the whole job where the sandbox can account for it, else each process. */
  readonly memoryBytes: number;
  /**
   * Writable space of the job: its `cwd`, `/tmp` and `/dev/shm` together, inputs included. Nothing
   * the job writes reaches the worker's disk beyond this.
   */
  readonly tmpDiskBytes: number;
  /** Total size of the declared outputs handed back. */
  readonly outputBytes: number;
}

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

/**
 * Sized for compilers: gcc and clang run ~4 processes, rustc one thread per codegen unit up to the
 * CPU count; a large C++ or Rust crate needs a few GiB; objects and their temporaries fit in 2 GiB.
 */
export const DEFAULT_JOB_LIMITS: JobLimits = Object.freeze({
  processes: 512,
  memoryBytes: 4 * GiB,
  tmpDiskBytes: 2 * GiB,
  outputBytes: 1 * GiB,
});

/**
 * The line a sandbox appends to a job's stderr when it ran into a limit, so that whoever reads the
 * log of a failed remote job sees why. `outputBytes` is the output limit the sandbox applied.
 */
export function limitNote(kind: LimitKind, limits: JobLimits, outputBytes = limits.outputBytes): Buffer {
  const what = {
    processes: `${limits.processes} processes`,
    memory: `${Math.round(limits.memoryBytes / MiB)} MiB of memory`,
    disk: `${Math.round(limits.tmpDiskBytes / MiB)} MiB of disk (cwd, /tmp and /dev/shm)`,
    output: `${outputBytes} bytes of outputs`,
  }[kind];
  return Buffer.from(`\nkiln: the job exceeded its limit of ${what} on this worker\n`);
}
