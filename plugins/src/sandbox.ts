/** What a sandbox plugin implements: run one compile job isolated from the host. */
import type { Readable } from 'node:stream';
import type { JobLimits, LimitKind } from './job-limits.js';

/** A file the job starts with. */
export interface JobInput {
  /** Absolute path inside the sandbox; must lie under the job's `cwd`. */
  readonly path: string;
  readonly data: Uint8Array;
  /** Mode 0755 instead of 0644. */
  readonly executable?: boolean;
}

export interface SandboxJob {
  /** Unique per job; safe as a file name ([A-Za-z0-9_-]). */
  readonly id: string;
  /**
   * A materialised toolchain: a directory whose top-level entries (usr, lib, lib64, …) become the
   * job's root file system, read-only.
   */
  readonly toolchainRoot: string;
  /**
   * Absolute path of the job's working directory inside the sandbox: the client's own working
   * directory, reproduced so that debug info records the same path as a local build. It starts
   * empty except for `inputs`, and is writable.
   */
  readonly cwd: string;
  /** argv[0] is an absolute path inside the toolchain root. */
  readonly argv: readonly string[];
  /** The whole environment of the job (nothing is inherited from the worker). */
  readonly env: Readonly<Record<string, string>>;
  readonly inputs: readonly JobInput[];
  /** Absolute paths under `cwd` to collect after the job; missing ones are simply absent. */
  readonly outputs: readonly string[];
  /** Wall-clock limit; the whole process tree is killed when it passes. */
  readonly timeoutMs: number;
  /**
   * What the job may use (the worker's `[limits]`). The sandbox enforces them so that a hostile or
   * runaway job cannot hurt the worker or the jobs next to it.
   */
  readonly limits: JobLimits;
}

/**
 * A declared output the job wrote. The sandbox keeps the file until the result is released, so an
 * output of any size is streamed, never held in memory whole.
 */
export interface SandboxOutput {
  readonly size: number;
  /** The file's content, exactly `size` bytes. Call once, before `release`. */
  stream(): Readable;
}

export interface SandboxResult {
  /** The job's exit code; null when it was killed by a signal. */
  readonly exitCode: number | null;
  readonly signal: string | null;
  readonly timedOut: boolean;
  readonly stdout: Buffer;
  readonly stderr: Buffer;
  /** The declared outputs the job wrote, by their path inside the sandbox. */
  readonly outputs: ReadonlyMap<string, SandboxOutput>;
  /**
   * Set when the sandbox knows the job ran into one of its limits (then `outputs` is empty): the
   * failure is the worker's, not the user's code, so the client compiles locally and caches nothing
   * from this run. A job can also just fail on a limit (fork or malloc failing) without the sandbox
   * knowing; it then looks like any failed compile.
   */
  readonly limitExceeded?: LimitKind;
  /**
   * Frees what the outputs still hold (the job's directory). The caller calls it exactly once,
   * after streaming the outputs (or deciding not to); `bufferedResult` does both for small jobs.
   */
  release(): Promise<void>;
}

export interface SandboxProbe {
  readonly ok: boolean;
  /** What was found, or what the operator must do to make it work. */
  readonly detail: string;
  readonly version?: string;
}

/**
 * A sandbox runs jobs with no network, no view of the host's files beyond the toolchain and the
 * job's inputs, a time limit, and the job's `limits` on processes, memory, writable space and output.
 *
 * @example
 * ```ts
 * const result = await sandbox.run({ id: 'j1', toolchainRoot, cwd: '/home/me/proj', argv: ['/usr/bin/gcc', '-c', 'a.i'],
 *   env: { PATH: '/usr/bin' }, inputs: [{ path: '/home/me/proj/a.i', data }], outputs: ['/home/me/proj/a.o'], timeoutMs: 60_000,
 *   limits: DEFAULT_JOB_LIMITS });
 * ```
 */
export interface Sandbox {
  /** The plugin's name, as shown in worker status ("bwrap", "docker"). */
  readonly name: string;
  /** Checks the host can run jobs (tool installed, right version, engine reachable). Never rejects. */
  probe(): Promise<SandboxProbe>;
  /**
   * Runs one job to completion. A job that fails, crashes, times out or runs into one of its limits
   * resolves normally (that is the user's compile failing, or `limitExceeded`); the promise rejects with a `KILN_ERR_SANDBOX_*` KilnError only when the
   * sandbox itself could not do its work, so the client knows to compile locally instead.
   */
  run(job: SandboxJob): Promise<SandboxResult>;
}
