import { execFile, execFileSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
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
  OutputLimitError,
  removeJobDir,
  type Sandbox,
  type SandboxJob,
  type SandboxProbe,
  type SandboxResult,
  validateJob,
  writeInputs,
} from '@kiln/plugins';
import type { UnshareConfig } from './config.js';
import { runJob } from './run-job.js';
import { setupScript } from './setup-script.js';

export interface UnshareSandboxOptions extends UnshareConfig {
  readonly work_dir: string;
}

/** A job's space on the host: a tmpfs of the job's disk limit, holding its cwd, /tmp and /dev/shm. */
interface Space {
  readonly base: string;
  readonly cwd: string;
  readonly tmp: string;
  readonly shm: string;
  readonly root: string;
}

function run(file: string, args: readonly string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { timeout: 10_000 }, (err, _out, stderr) => {
      if (err) reject(new Error(`${file} ${args.join(' ')}: ${(stderr || err.message).trim()}`));
      else resolve();
    });
  });
}

function which(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '/usr/bin:/bin').split(':')) {
    const file = path.join(dir || '.', name);
    try {
      accessSync(file, constants.X_OK);
      return file;
    } catch {}
  }
  return undefined;
}

const MiB = 1024 * 1024;

interface Tools {
  readonly unshare: string;
  readonly prlimit: string;
  readonly env: string;
}

/**
 * Runs each job in new mount, pid, network, IPC and UTS namespaces made by util-linux `unshare`,
 * chrooted into a root built from the toolchain, as a host uid of its own without capabilities,
 * under `prlimit` limits. Needs a root worker: it mounts a tmpfs per job and switches uids.
 */
export class UnshareSandbox implements Sandbox {
  readonly name = 'unshare';
  readonly #busy = new Set<number>();
  #tools: Tools | undefined;

  constructor(private readonly options: UnshareSandboxOptions) {}

  /** The host tools, or what the operator must install. */
  #locate(): Tools {
    if (this.#tools) return this.#tools;
    if (process.getuid?.() !== 0)
      throw new Error('the unshare sandbox needs a root worker (it mounts and switches uids)');
    const [unshare, prlimit, env] = ['unshare', 'prlimit', 'env'].map(which);
    if (!unshare || !prlimit || !env)
      throw new Error('unshare and prlimit not found in PATH: apt install util-linux');
    const help = execFileSync(unshare, ['--help'], { encoding: 'utf8' });
    if (!help.includes('--root') || !help.includes('--setuid'))
      throw new Error(`${unshare} has no --root/--setuid: util-linux 2.35 or later is needed`);
    this.#tools = { unshare, prlimit, env };
    return this.#tools;
  }

  async probe(): Promise<SandboxProbe> {
    try {
      const { unshare } = this.#locate();
      const root = await fs.mkdtemp(path.join(await this.#workDir(), 'probe-root-'));
      try {
        // A job whose command does not exist: the setup must still get to "ready".
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
      return {
        ok: true,
        detail: `${unshare}: mount, pid, net, ipc and uts namespaces, a chroot of the toolchain, jobs as host uid ${this.options.slot_uid_base} + their slot; cwd, /tmp and /dev/shm share a tmpfs of the job's disk limit; memory limited per process (RLIMIT_AS)`,
      };
    } catch (err) {
      return { ok: false, detail: (err as Error).message };
    }
  }

  async #workDir(): Promise<string> {
    await ensureWorkDir(this.options.work_dir);
    return this.options.work_dir;
  }

  async #createSpace(job: SandboxJob, uid: number): Promise<Space> {
    const base = await fs.mkdtemp(path.join(await this.#workDir(), `${job.id}-`));
    try {
      await run('mount', [
        '-t',
        'tmpfs',
        '-o',
        `size=${job.limits.tmpDiskBytes},nr_inodes=262144,mode=0711,nosuid,nodev`,
        'kiln-job',
        base,
      ]);
    } catch (err) {
      await fs.rmdir(base).catch(() => {});
      throw err;
    }
    const space = { base, cwd: `${base}/cwd`, tmp: `${base}/tmp`, shm: `${base}/shm`, root: `${base}/root` };
    try {
      await fs.mkdir(space.root, { mode: 0o755 });
      for (const dir of [space.cwd, space.tmp, space.shm]) {
        await fs.mkdir(dir, { mode: 0o700 });
        await fs.chown(dir, uid, this.options.job_gid);
      }
    } catch (err) {
      await this.#removeSpace(space);
      throw err;
    }
    return space;
  }

  async #removeSpace(space: Space): Promise<void> {
    await run('umount', [space.base]).catch(() => run('umount', ['-l', space.base]));
    await removeJobDir(space.base);
  }

  async run(job: SandboxJob): Promise<SandboxResult> {
    validateJob(job);
    let tools: Tools;
    try {
      tools = this.#locate();
      if (!(await fs.stat(job.toolchainRoot)).isDirectory())
        throw new Error(`${job.toolchainRoot} is not a directory`);
    } catch (err) {
      throw KILN_ERR_SANDBOX_FAILED(this.name, (err as Error).message);
    }
    let slot = 0;
    while (this.#busy.has(slot)) slot++;
    this.#busy.add(slot);
    try {
      const uid = this.options.slot_uid_base + slot;
      const space = await this.#createSpace(job, uid).catch((err: Error) => {
        throw KILN_ERR_SANDBOX_FAILED(this.name, `cannot create the job's space: ${err.message}`);
      });
      let result: SandboxResult | undefined;
      try {
        result = await this.#runIn(job, space, uid, tools);
        return result;
      } finally {
        if (!result) await this.#removeSpace(space).catch(() => {});
      }
    } finally {
      this.#busy.delete(slot);
    }
  }

  async #runIn(job: SandboxJob, space: Space, uid: number, tools: Tools): Promise<SandboxResult> {
    const gid = this.options.job_gid;
    try {
      await writeInputs(space.cwd, job.cwd, job.inputs, { uid, gid });
      const script = await setupScript({
        toolchainRoot: job.toolchainRoot,
        newRoot: space.root,
        cwdDir: space.cwd,
        tmpDir: space.tmp,
        shmDir: space.shm,
        cwd: job.cwd,
      });
      const { limits } = job;
      const exec = await runJob(
        tools.prlimit,
        [
          // RLIMIT_NPROC counts the job's uid only: the setup (root) is not held by it.
          `--nproc=${limits.processes}`,
          `--as=${limits.memoryBytes}`,
          `--fsize=${limits.tmpDiskBytes}`,
          '--core=0',
          '--',
          tools.unshare,
          ...[
            '--mount',
            '--pid',
            '--fork',
            '--net',
            '--ipc',
            '--uts',
            '--propagation',
            'private',
            '--kill-child',
          ],
          '--',
          '/bin/sh',
          '-c',
          script,
          'kiln-setup',
          tools.env,
          '-i',
          '--',
          ...Object.entries(job.env).map(([k, v]) => `${k}=${v}`),
          tools.unshare,
          ...['--root', space.root, '--wd', job.cwd, '--setgid', String(gid), '--setuid', String(uid)],
          '--',
          ...job.argv,
        ],
        { timeoutMs: job.timeoutMs, maxLogBytes: this.options.max_log_bytes },
      );
      if (!exec.ready && !exec.timedOut)
        throw new Error(
          `the namespace setup failed: ${exec.stderr.subarray(0, 2048).toString('utf8').trim()}`,
        );
      const outputBytes = Math.min(job.limits.outputBytes, this.options.max_output_bytes);
      let limitExceeded: LimitKind | undefined;
      if (!exec.timedOut && exec.exitCode !== 0 && (exec.signal === 'SIGXFSZ' || (await this.#full(space))))
        limitExceeded = 'disk';
      let outputs = new Map<string, HeldOutput>();
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
        released ??= closeOutputs(outputs).then(() => this.#removeSpace(space).catch(() => {}));
        return released;
      };
      const { ready: _, ...result } = exec;
      if (!limitExceeded) return { ...result, outputs, release };
      const what =
        limitExceeded === 'disk'
          ? `${Math.round(job.limits.tmpDiskBytes / MiB)} MiB of disk`
          : `${outputBytes} bytes of outputs`;
      const stderr = Buffer.concat([
        exec.stderr,
        Buffer.from(`\nkiln: the job exceeded its limit of ${what} on this worker\n`),
      ]);
      return { ...result, stderr, outputs, limitExceeded, release };
    } catch (err) {
      if (err instanceof KilnError) throw err;
      throw KILN_ERR_SANDBOX_FAILED(this.name, (err as Error).message);
    }
  }

  /** Whether the job's tmpfs is (nearly) full: it ran out of room, not into a bug of its own. */
  async #full(space: Space): Promise<boolean> {
    const st = await fs.statfs(space.base).catch(() => undefined);
    if (!st) return false;
    return st.ffree === 0 || st.bavail * st.bsize < Math.max(MiB, (st.blocks * st.bsize) / 100);
  }
}
