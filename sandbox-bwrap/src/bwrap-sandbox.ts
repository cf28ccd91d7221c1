import fs from 'node:fs/promises';
import path from 'node:path';
import {
  KILN_ERR_SANDBOX_FAILED,
  KilnError,
  type Sandbox,
  type SandboxJob,
  type SandboxProbe,
  type SandboxResult,
} from '@kiln/plugins';
import { type BwrapBinary, locateBwrap } from './bwrap-binary.js';
import { bwrapArgs } from './bwrap-command.js';
import type { BwrapConfig } from './config.js';
import { collectOutputs, ensureWorkDir, OutputLimitError, removeJobDir, writeInputs } from './job-dir.js';
import { type Execution, executeBwrap } from './run-bwrap.js';
import { searchableBy } from './searchable.js';
import { validateJob } from './validate-job.js';

export interface BwrapSandboxOptions extends BwrapConfig {
  readonly work_dir: string;
}

/** bwrap's own failures (bad mount, missing executable) come before the job runs: "bwrap: …", status 1. */
function setupFailure(exec: Execution): string | undefined {
  if (exec.timedOut || exec.exitCode !== 1) return undefined;
  const text = exec.stderr.subarray(0, 4096).toString('utf8');
  return text.startsWith('bwrap: ') ? (text.split('\n')[0] ?? text) : undefined;
}

/** Runs each job in a fresh bubblewrap sandbox: the toolchain read-only, the job's directory, nothing else. */
export class BwrapSandbox implements Sandbox {
  readonly name = 'bwrap';
  #binary: Promise<BwrapBinary> | undefined;
  #workDir: Promise<void> | undefined;

  constructor(private readonly options: BwrapSandboxOptions) {}

  /**
   * The host identity bwrap starts with. A root worker starts it as job_uid, so that a job never
   * holds host root's uid even inside its user namespace, but only when that uid can reach the
   * toolchain and the work dir (a toolchain cache under /root cannot be); otherwise bwrap runs as
   * root and the job is job_uid inside its namespace only, still without any capability.
   */
  async #dropFor(toolchainRoot: string): Promise<{ uid: number; gid: number } | undefined> {
    const { job_uid: uid, job_gid: gid, work_dir } = this.options;
    if (process.getuid?.() !== 0 || uid === 0) return undefined;
    const ok = (await searchableBy(work_dir, uid, gid)) && (await searchableBy(toolchainRoot, uid, gid));
    return ok ? { uid, gid } : undefined;
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
    this.#workDir ??= ensureWorkDir(this.options.work_dir);
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
        await this.run({
          id: 'probe',
          toolchainRoot: root,
          cwd: '/kiln-probe',
          argv: ['/kiln-probe-no-such-program'],
          env: {},
          inputs: [],
          outputs: [],
          timeoutMs: 10_000,
        });
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
    const { job_uid: uid, work_dir } = this.options;
    const who = (await this.#dropFor(work_dir))
      ? `jobs run as uid ${uid}, also on the host`
      : `jobs run as uid ${uid} inside their user namespace`;
    return { ok: true, detail: `bubblewrap ${bin.version} at ${bin.path}; ${who}`, version: bin.version };
  }

  async run(job: SandboxJob): Promise<SandboxResult> {
    validateJob(job);
    let bin: BwrapBinary;
    try {
      bin = await this.#locate();
      await this.#prepareWorkDir();
      if (!(await fs.stat(job.toolchainRoot)).isDirectory())
        throw new Error(`${job.toolchainRoot} is not a directory`);
    } catch (err) {
      throw this.#failed((err as Error).message);
    }
    const jobDir = await fs.mkdtemp(path.join(this.options.work_dir, `${job.id}-`)).catch((err: Error) => {
      throw this.#failed(`cannot create a job directory: ${err.message}`);
    });
    try {
      const drop = await this.#dropFor(job.toolchainRoot);
      await writeInputs(jobDir, job.cwd, job.inputs, drop).catch((err: Error) => {
        throw this.#failed(`cannot write the job's inputs: ${err.message}`);
      });
      const args = await bwrapArgs(job, {
        bwrap: bin,
        jobDir,
        uid: this.options.job_uid,
        gid: this.options.job_gid,
        extraArgs: this.options.extra_args,
      });
      const exec = await executeBwrap(bin.path, args, {
        timeoutMs: job.timeoutMs,
        maxLogBytes: this.options.max_log_bytes,
        ...(drop ? { as: drop } : {}),
      }).catch((err: Error) => {
        throw this.#failed(`cannot start ${bin.path}: ${err.message}`);
      });
      const setup = setupFailure(exec);
      if (setup) throw this.#failed(setup);
      // A killed job's files are half-written: return none.
      const outputs = exec.timedOut
        ? new Map<string, Buffer>()
        : await collectOutputs(jobDir, job.cwd, job.outputs, this.options.max_output_bytes);
      return { ...exec, outputs };
    } catch (err) {
      if (err instanceof KilnError) throw err;
      if (err instanceof OutputLimitError) throw this.#failed(err.message);
      throw this.#failed((err as Error).message);
    } finally {
      await removeJobDir(jobDir).catch(() => {});
    }
  }
}
