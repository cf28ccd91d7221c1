import fs from 'node:fs/promises';
import path from 'node:path';
import {
  closeOutputs,
  collectOutputs,
  DEFAULT_JOB_LIMITS,
  ensureWorkDir,
  type HeldOutput,
  KILN_ERR_SANDBOX_FAILED,
  KilnError,
  type LimitKind,
  limitNote,
  OutputLimitError,
  type Sandbox,
  type SandboxJob,
  type SandboxProbe,
  type SandboxResult,
  validateJob,
  writeInputs,
} from '@kiln/plugins';
import { atLeast, type BwrapBinary, findExecutable, locateBwrap } from './bwrap-binary.js';
import { bwrapArgs } from './bwrap-command.js';
import type { BwrapConfig } from './config.js';
import {
  createJobSpace,
  type JobSpace,
  removeJobSpace,
  removeLeftovers,
  spaceExhausted,
} from './job-space.js';
import { prlimitArgs } from './rlimits.js';
import { type Execution, executeBwrap } from './run-bwrap.js';
import { searchableBy } from './searchable.js';
import { SlotUids } from './slot-uids.js';

/** After a failed tmpfs mount, jobs use work_dir's disk for this long before mounting is tried again. */
const MOUNT_RETRY_MS = 60_000;

export interface BwrapSandboxOptions extends BwrapConfig {
  readonly work_dir: string;
}

/**
 * bwrap's own failures (bad mount, missing executable) and prlimit's come before the job runs:
 * "bwrap: …" or "prlimit: …", status 1.
 */
function setupFailure(exec: Execution): string | undefined {
  if (exec.timedOut || exec.exitCode !== 1) return undefined;
  const text = exec.stderr.subarray(0, 4096).toString('utf8');
  return /^(bwrap|prlimit): /.test(text) ? (text.split('\n')[0] ?? text) : undefined;
}

/** Runs each job in a fresh bubblewrap sandbox: the toolchain read-only, the job's directory, nothing else. */
export class BwrapSandbox implements Sandbox {
  readonly name = 'bwrap';
  #binary: Promise<BwrapBinary> | undefined;
  #workDir: Promise<void> | undefined;
  readonly #slots: SlotUids;
  /** Why a job's own tmpfs cannot be mounted here, once a mount failed; jobs then use work_dir's disk. */
  #mountFailure: string | undefined;
  /** When mounting last failed: it is tried again after MOUNT_RETRY_MS (a passing ENOSPC or EMFILE). */
  #mountFailedAt = 0;

  constructor(private readonly options: BwrapSandboxOptions) {
    this.#slots = new SlotUids(options.slot_uid_base);
  }

  static #isRoot(): boolean {
    return process.getuid?.() === 0;
  }

  /**
   * The host identity bwrap starts with. A root worker starts it as the job's slot uid, so that a
   * job never holds host root's uid even inside its user namespace and its process limit counts
   * its own processes only; but only when that uid can reach the toolchain and the work dir (a
   * toolchain cache under /root cannot be). Otherwise bwrap runs as root and the job is job_uid
   * inside its namespace only, still without any capability, and without a process limit.
   */
  async #dropFor(toolchainRoot: string, uid: number): Promise<{ uid: number; gid: number } | undefined> {
    const { job_uid, job_gid: gid, work_dir } = this.options;
    if (!BwrapSandbox.#isRoot() || job_uid === 0) return undefined;
    const ok = (await searchableBy(work_dir, uid, gid)) && (await searchableBy(toolchainRoot, uid, gid));
    return ok ? { uid, gid } : undefined;
  }

  /** A root worker gives each job a tmpfs of its own disk limit; when mounting fails, work_dir's disk. */
  async #createSpace(job: SandboxJob, owner: { uid: number; gid: number } | undefined): Promise<JobSpace> {
    const { work_dir } = this.options;
    const retry = Date.now() - this.#mountFailedAt >= MOUNT_RETRY_MS;
    if (BwrapSandbox.#isRoot() && (this.#mountFailure === undefined || retry)) {
      try {
        const space = await createJobSpace(work_dir, job.id, job.limits.tmpDiskBytes, owner);
        this.#mountFailure = undefined;
        return space;
      } catch (err) {
        this.#mountFailure = (err as Error).message;
        this.#mountFailedAt = Date.now();
      }
    }
    return createJobSpace(work_dir, job.id, undefined, owner);
  }

  #prlimit(): string {
    const found = findExecutable('prlimit');
    if (!found)
      throw new Error(
        'prlimit not found in PATH, needed to set the job limits: install util-linux (apt install util-linux)',
      );
    return found;
  }

  #locate(): Promise<BwrapBinary> {
    this.#binary ??= locateBwrap(this.options.bwrap_path);
    // A failed lookup is not cached: the operator may install bwrap while the worker runs.
    this.#binary.catch(() => {
      this.#binary = undefined;
    });
    return this.#binary;
  }

  #prepareWorkDir(): Promise<void> {
    const dir = this.options.work_dir;
    this.#workDir ??= ensureWorkDir(dir).then(() => removeLeftovers(dir));
    this.#workDir.catch(() => {
      this.#workDir = undefined;
    });
    return this.#workDir;
  }

  #failed(detail: string): KilnError {
    return KILN_ERR_SANDBOX_FAILED(this.name, detail);
  }

  async probe(): Promise<SandboxProbe> {
    let bin: BwrapBinary;
    try {
      bin = await this.#locate();
    } catch (err) {
      return { ok: false, detail: (err as Error).message };
    }
    // An empty job whose command does not exist: reaching bwrap's execvp proves that namespaces,
    // mounts and the uid switch all work here (they do not in e.g. an unprivileged container).
    try {
      await this.#prepareWorkDir();
      const root = await fs.mkdtemp(path.join(this.options.work_dir, 'probe-root-'));
      await fs.chmod(root, 0o755);
      try {
        const r = await this.run({
          id: 'probe',
          toolchainRoot: root,
          cwd: '/kiln-probe',
          argv: ['/kiln-probe-no-such-program'],
          env: {},
          inputs: [],
          outputs: [],
          timeoutMs: 10_000,
          limits: DEFAULT_JOB_LIMITS,
        });
        await r.release();
      } finally {
        await fs.rm(root, { recursive: true, force: true });
      }
    } catch (err) {
      const message = (err as Error).message;
      if (!message.includes('execvp /kiln-probe-no-such-program')) {
        return {
          ok: false,
          detail: `bubblewrap ${bin.version} at ${bin.path} cannot start a sandbox: ${message}`,
          version: bin.version,
        };
      }
    }
    const { job_uid: uid, slot_uid_base: base, work_dir } = this.options;
    const who = (await this.#dropFor(work_dir, base))
      ? `jobs run as uid ${uid}, on the host as uid ${base} + their slot, each with its own process limit`
      : `jobs run as uid ${uid} inside their user namespace; their process limit is not enforced (that needs a root worker whose work_dir and toolchains other uids can reach)`;
    const disk =
      BwrapSandbox.#isRoot() && this.#mountFailure === undefined
        ? "each job's cwd, /tmp and /dev/shm share a tmpfs of the job's disk limit"
        : `/tmp and /dev/shm are tmpfs of the job's disk limit${atLeast7(bin) ? '' : ' (unbounded: bwrap < 0.7)'}, but its cwd is on work_dir's disk, each file up to that limit${this.#mountFailure ? ` (cannot mount a tmpfs: ${this.#mountFailure})` : ' (worker not root)'}`;
    return {
      ok: true,
      detail: `bubblewrap ${bin.version} at ${bin.path}; ${who}; memory limited per process (RLIMIT_AS); ${disk}`,
      version: bin.version,
    };
  }

  async run(job: SandboxJob): Promise<SandboxResult> {
    validateJob(job);
    let bin: BwrapBinary;
    let prlimit: string;
    try {
      bin = await this.#locate();
      prlimit = this.#prlimit();
      await this.#prepareWorkDir();
      if (!(await fs.stat(job.toolchainRoot)).isDirectory())
        throw new Error(`${job.toolchainRoot} is not a directory`);
    } catch (err) {
      throw this.#failed((err as Error).message);
    }
    const slotUid = this.#slots.acquire();
    try {
      const drop = await this.#dropFor(job.toolchainRoot, slotUid);
      const space = await this.#createSpace(job, drop).catch((err: Error) => {
        throw this.#failed(`cannot create a job directory: ${err.message}`);
      });
      let result: SandboxResult | undefined;
      try {
        result = await this.#runIn(job, space, bin, prlimit, drop);
        return result;
      } finally {
        // The outputs are streamed from the job's space: it goes when the caller releases them.
        if (!result) await removeJobSpace(space).catch(() => {});
      }
    } finally {
      this.#slots.release(slotUid);
    }
  }

  async #runIn(
    job: SandboxJob,
    space: JobSpace,
    bin: BwrapBinary,
    prlimit: string,
    drop: { uid: number; gid: number } | undefined,
  ): Promise<SandboxResult> {
    try {
      await writeInputs(space.cwd, job.cwd, job.inputs, drop).catch((err: Error) => {
        throw this.#failed(`cannot write the job's inputs: ${err.message}`);
      });
      const args = await bwrapArgs(job, {
        bwrap: bin,
        jobDir: space.cwd,
        uid: this.options.job_uid,
        gid: this.options.job_gid,
        extraArgs: this.options.extra_args,
        ...(space.mounted ? { tmpDirs: space.mounted } : { tmpBytes: job.limits.tmpDiskBytes }),
      });
      const exec = await executeBwrap(
        prlimit,
        [...prlimitArgs(job.limits, drop !== undefined), '--', bin.path, ...args],
        {
          timeoutMs: job.timeoutMs,
          maxLogBytes: this.options.max_log_bytes,
          ...(drop ? { as: drop } : {}),
        },
      ).catch((err: Error) => {
        throw this.#failed(`cannot start ${bin.path}: ${err.message}`);
      });
      const setup = setupFailure(exec);
      if (setup) throw this.#failed(setup);
      const outputBytes = Math.min(job.limits.outputBytes, this.options.max_output_bytes);
      let limitExceeded: LimitKind | undefined;
      if (!exec.timedOut && exec.exitCode !== 0) {
        // SIGXFSZ: one file reached the disk limit (RLIMIT_FSIZE).
        if (exec.signal === 'SIGXFSZ' || (await spaceExhausted(space))) limitExceeded = 'disk';
      }
      let outputs = new Map<string, HeldOutput>();
      // A killed job's files are half-written: return none.
      if (!exec.timedOut && !limitExceeded) {
        try {
          outputs = await collectOutputs(space.cwd, job.cwd, job.outputs, outputBytes);
        } catch (err) {
          if (!(err instanceof OutputLimitError)) throw err;
          limitExceeded = 'output';
        }
      }
      let released: Promise<void> | undefined;
      const release = () => {
        released ??= closeOutputs(outputs).then(() => removeJobSpace(space).catch(() => {}));
        return released;
      };
      if (!limitExceeded) return { ...exec, outputs, release };
      const stderr = Buffer.concat([exec.stderr, limitNote(limitExceeded, job.limits, outputBytes)]);
      return { ...exec, stderr, outputs, limitExceeded, release };
    } catch (err) {
      if (err instanceof KilnError) throw err;
      throw this.#failed((err as Error).message);
    }
  }
}

function atLeast7(bin: BwrapBinary): boolean {
  return atLeast(bin.parts, [0, 7, 0]);
}
