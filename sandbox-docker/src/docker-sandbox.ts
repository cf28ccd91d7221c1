import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import {
  closeOutputs,
  collectOutputs,
  ensureWorkDir,
  type HeldOutput,
  KILN_ERR_SANDBOX_FAILED,
  type KilnError,
  type LimitKind,
  limitNote,
  OutputLimitError,
  type PluginLogger,
  type Sandbox,
  type SandboxJob,
  type SandboxProbe,
  type SandboxResult,
  signalName,
  validateJob,
  writeInputs,
} from '@kiln/plugins';
import type { DockerConfig } from './config.js';
import { ContainerPool, type WarmContainer } from './container-pool.js';
import { EngineClient, EngineError, EngineUnreachableError, engineSocket } from './engine-client.js';
import { ImageCache, LABEL_TOOLCHAIN, LABEL_WORKER } from './image-cache.js';
import {
  clearSlot,
  createSlot,
  hostCwd,
  mountPointFor,
  removeLeftoverSlots,
  removeSlot,
  slotExhausted,
} from './job-slot.js';
import { buildRunner } from './runner-binary.js';
import { RunnerChannel } from './runner-channel.js';

export interface DockerSandboxOptions extends DockerConfig {
  readonly work_dir: string;
  readonly workerId: string;
  readonly hostTriple: string;
  readonly maxJobs: number;
  readonly logger?: PluginLogger;
}

/** What the engine and the host allow, found once the engine answers. */
interface Engine {
  readonly version: string;
  readonly api: string;
  readonly rootless: boolean;
  readonly runner: string;
  readonly user: { uid: number; gid: number };
  /** Who owns the job's files on the host (a root worker hands them to the job's uid). */
  readonly owner: { uid: number; gid: number } | undefined;
}

const RUNNER_IN_CONTAINER = '/.kiln-runner';
const isRoot = () => process.getuid?.() === 0;

/**
 * rlimits no higher than this host allows: an engine that asks for more than it may have fails to
 * start the container (Podman asks for nofile 1048576 and a large nproc by default). nproc stays
 * the host's: it counts a uid's processes host-wide, the pids cgroup limits the job.
 */
async function ulimits(): Promise<{ Name: string; Soft: number; Hard: number }[]> {
  const limits = await fs.readFile('/proc/self/limits', 'utf8').catch(() => '');
  const hard = (name: string, fallback: number) => {
    const v = new RegExp(`^${name}\\s+\\S+\\s+(\\S+)`, 'm').exec(limits)?.[1];
    return v === undefined || v === 'unlimited' ? fallback : Number(v);
  };
  const nofile = Math.min(65_536, hard('Max open files', 65_536));
  const nproc = Math.min(4_194_304, hard('Max processes', 4_194_304));
  return [
    { Name: 'nofile', Soft: nofile, Hard: nofile },
    { Name: 'nproc', Soft: nproc, Hard: nproc },
    { Name: 'core', Soft: 0, Hard: 0 },
  ];
}

/**
 * Runs jobs in Docker (or Podman) containers through the Engine API: one image per toolchain,
 * warm containers running kiln-runner, the job's directory bind-mounted, read-only root, no
 * network, no capabilities, no new privileges, an unprivileged uid, pids/memory/CPU limits.
 */
export class DockerSandbox implements Sandbox {
  readonly name = 'docker';
  readonly #engine: EngineClient;
  readonly #images: ImageCache;
  readonly #pool: ContainerPool;
  #ready: Promise<Engine> | undefined;
  #cleanedUp = false;
  /** Containers whose removal failed (engine down): removed once it answers again. */
  readonly #orphans = new Set<string>();
  readonly #prefix: string;

  constructor(private readonly options: DockerSandboxOptions) {
    this.#engine = new EngineClient(engineSocket(options.engine_socket), options.api_timeout * 1000);
    this.#pool = new ContainerPool(
      options.warm_containers ?? options.maxJobs,
      options.idle_timeout * 1000,
      (c) => this.#destroy(c),
    );
    this.#images = new ImageCache(this.#engine, {
      workerId: options.workerId,
      hostTriple: options.hostTriple,
      maxBytes: options.image_cache_size,
      release: (id) => this.#pool.releaseImage(id),
    });
    this.#prefix = `kiln-${options.workerId
      .toLowerCase()
      .replace(/[^a-z0-9_.-]/g, '-')
      .slice(0, 40)}`;
  }

  get socketPath(): string {
    return this.#engine.socketPath;
  }

  #failed(detail: string): KilnError {
    return KILN_ERR_SANDBOX_FAILED(this.name, detail);
  }

  #connect(): Promise<Engine> {
    this.#ready ??= this.#start();
    // Not cached when it fails: the engine may come up while the worker runs.
    this.#ready.catch(() => {
      this.#ready = undefined;
    });
    return this.#ready;
  }

  async #start(): Promise<Engine> {
    const v = await this.#engine.version();
    const info = (await this.#engine.json('GET', '/info')) as {
      SecurityOptions?: string[];
      Runtimes?: Record<string, unknown>;
    };
    const rootless = (info.SecurityOptions ?? []).some((o) => o.includes('name=rootless'));
    const { runtime } = this.options;
    if (runtime && info.Runtimes && !(runtime in info.Runtimes))
      throw new Error(
        `the engine has no runtime "${runtime}" (it has ${Object.keys(info.Runtimes).join(', ')}): install it and add it to daemon.json, or remove [sandbox_config] runtime`,
      );
    await ensureWorkDir(this.options.work_dir);
    const runner = this.options.runner_path ?? (await buildRunner(this.options.work_dir));
    if (!this.#cleanedUp) {
      await this.#removeLeftovers();
      this.#cleanedUp = true;
    }
    const me = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };
    const configured = this.options.job_uid !== undefined;
    const user = configured
      ? { uid: this.options.job_uid!, gid: this.options.job_gid ?? this.options.job_uid! }
      : rootless
        ? { uid: 0, gid: 0 }
        : isRoot()
          ? { uid: 65534, gid: 65534 }
          : me;
    return {
      version: v.Version,
      api: v.ApiVersion,
      rootless,
      runner,
      user,
      owner: isRoot() && !rootless ? user : undefined,
    };
  }

  /** Only what this worker created: containers labelled with its id, and its slots in work_dir. */
  async #removeLeftovers(): Promise<void> {
    const filter = encodeURIComponent(
      JSON.stringify({ label: [`${LABEL_WORKER}=${this.options.workerId}`] }),
    );
    const left = (await this.#engine.json('GET', `/containers/json?all=1&filters=${filter}`)) as {
      Id: string;
    }[];
    for (const c of left)
      await this.#engine.json('DELETE', `/containers/${c.Id}?force=1&v=1`).catch(() => {});
    const slots = await removeLeftoverSlots(this.options.work_dir, this.#prefix);
    if (left.length || slots)
      this.options.logger?.info(
        `removed ${left.length} container(s) and ${slots} job dir(s) a previous run left`,
      );
  }

  async probe(): Promise<SandboxProbe> {
    let engine: Engine;
    try {
      engine = await this.#connect();
    } catch (err) {
      return { ok: false, detail: this.#unreachableDetail(err as Error) };
    }
    const who = engine.rootless
      ? "jobs run as root of a rootless engine (the worker's own uid on the host)"
      : `jobs run as uid ${engine.user.uid}`;
    const disk = isRoot()
      ? "each container's cwd, /tmp and /dev/shm share a tmpfs of the job's disk limit"
      : "the job's disk limit is not enforced (that needs a root worker to mount a tmpfs)";
    return {
      ok: true,
      detail: `container engine ${engine.version} (API ${engine.api}${engine.rootless ? ', rootless' : ''}) at unix://${this.#engine.socketPath}${this.options.runtime ? `, runtime ${this.options.runtime}` : ''}; ${who}, no capabilities, no network, read-only root; pids, memory and CPU limited per container; ${disk}`,
      version: engine.version,
    };
  }

  #unreachableDetail(err: Error): string {
    if (err instanceof EngineUnreachableError)
      return `${err.message}: start the engine (systemctl start docker, or dockerd), or point [sandbox_config] engine_socket or DOCKER_HOST at a running one (rootless Docker: unix://$XDG_RUNTIME_DIR/docker.sock; Podman: \`podman system service\` and its socket)`;
    return err.message;
  }

  async run(job: SandboxJob): Promise<SandboxResult> {
    validateJob(job);
    let engine: Engine;
    let imageId: string;
    let mountPoint: string | undefined;
    try {
      engine = await this.#connect();
      if (!(await fs.stat(job.toolchainRoot)).isDirectory())
        throw new Error(`${job.toolchainRoot} is not a directory`);
      await this.#removeOrphans();
      imageId = await this.#images.imageFor(job.toolchainRoot);
      mountPoint = await mountPointFor(job.toolchainRoot, job.cwd);
    } catch (err) {
      throw this.#failed(this.#unreachableDetail(err as Error));
    }
    const key = JSON.stringify([imageId, mountPoint ?? '/tmp', job.limits]);
    let c: WarmContainer;
    try {
      c = await this.#pool.acquire(key, () => this.#create(engine, imageId, key, mountPoint, job));
    } catch (err) {
      if (err instanceof EngineError && err.status === 404) this.#images.forget();
      throw this.#failed(`cannot start a container: ${this.#unreachableDetail(err as Error)}`);
    }
    let result: SandboxResult | undefined;
    try {
      result = await this.#runIn(c, engine, mountPoint, job);
      return result;
    } finally {
      if (!result) await this.#recycle(c);
    }
  }

  async #runIn(
    c: WarmContainer,
    engine: Engine,
    mountPoint: string | undefined,
    job: SandboxJob,
  ): Promise<SandboxResult> {
    const dir = hostCwd(c.slot, mountPoint, job.cwd);
    await fs.mkdir(dir, { recursive: true, mode: 0o755 }).catch((err: Error) => {
      throw this.#failed(`cannot create the job's directory: ${err.message}`);
    });
    await writeInputs(dir, job.cwd, job.inputs, engine.owner).catch((err: Error) => {
      throw this.#failed(`cannot write the job's inputs: ${err.message}`);
    });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      c.channel.kill();
    }, job.timeoutMs);
    let r: Awaited<ReturnType<RunnerChannel['run']>>;
    try {
      r = await c.channel.run({ cwd: job.cwd, argv: job.argv, env: job.env }, this.options.max_log_bytes);
    } catch (err) {
      // The engine or the container went away: this job fails (the client compiles locally).
      await this.#pool.discard(c);
      throw this.#failed(`the container ended during the job: ${(err as Error).message}`);
    } finally {
      clearTimeout(timer);
    }
    if (r.status === -1)
      throw this.#failed(`kiln-runner could not start the job: ${r.stderr.toString().trim()}`);
    const signalled = (r.status & 0x7f) !== 0;
    const exitCode = signalled ? null : (r.status >> 8) & 0xff;
    const signal = signalled ? (signalName(r.status & 0x7f) ?? `SIG${r.status & 0x7f}`) : null;
    const stderrText = r.stderr.subarray(0, 4096).toString('utf8');
    if (exitCode === 127 && /^kiln-runner: (execve|chdir) /.test(stderrText))
      throw this.#failed(stderrText.split('\n')[0]!);
    const outputBytes = Math.min(job.limits.outputBytes, this.options.max_output_bytes);
    let limitExceeded: LimitKind | undefined;
    if (!timedOut && exitCode !== 0) {
      if (await slotExhausted(c.slot)) limitExceeded = 'disk';
      // Nothing else in the container kills a job with SIGKILL: the kernel's OOM killer did.
      else if (signal === 'SIGKILL') limitExceeded = 'memory';
    }
    let outputs = new Map<string, HeldOutput>();
    if (!timedOut && !limitExceeded) {
      try {
        outputs = await collectOutputs(dir, job.cwd, job.outputs, outputBytes);
      } catch (err) {
        if (!(err instanceof OutputLimitError)) throw this.#failed((err as Error).message);
        limitExceeded = 'output';
      }
    }
    let released: Promise<void> | undefined;
    const release = () => {
      released ??= closeOutputs(outputs).then(() => this.#recycle(c));
      return released;
    };
    const base = {
      exitCode: timedOut ? null : exitCode,
      signal: timedOut ? 'SIGKILL' : signal,
      timedOut,
      stdout: r.stdout,
      outputs,
      release,
    };
    if (!limitExceeded) return { ...base, stderr: r.stderr };
    return {
      ...base,
      stderr: Buffer.concat([r.stderr, limitNote(limitExceeded, job.limits, outputBytes)]),
      limitExceeded,
    };
  }

  /** After a job: back to the pool once its slot is verifiably empty, else destroyed. */
  async #recycle(c: WarmContainer): Promise<void> {
    const clean = await clearSlot(c.slot).then(
      () => true,
      (err: Error) => {
        this.options.logger?.warn(`container ${c.id.slice(0, 12)} not reused: ${err.message}`);
        return false;
      },
    );
    await this.#pool.giveBack(c, clean);
  }

  async #create(
    engine: Engine,
    imageId: string,
    key: string,
    mountPoint: string | undefined,
    job: SandboxJob,
  ): Promise<WarmContainer> {
    const { limits } = job;
    const slot = await createSlot(
      this.options.work_dir,
      this.#prefix,
      isRoot() ? limits.tmpDiskBytes : undefined,
    );
    const name = `${this.#prefix}-${randomBytes(6).toString('hex')}`;
    let id: string | undefined;
    try {
      const cpus =
        this.options.cpus ?? Math.max(1, Math.floor(os.availableParallelism() / this.options.maxJobs));
      const mounts = [
        { Type: 'bind', Source: engine.runner, Target: RUNNER_IN_CONTAINER, ReadOnly: true },
        { Type: 'bind', Source: slot.tmp, Target: '/tmp' },
        { Type: 'bind', Source: slot.shm, Target: '/dev/shm' },
        ...(mountPoint ? [{ Type: 'bind', Source: slot.mnt, Target: mountPoint }] : []),
      ];
      const created = (await this.#engine.json('POST', `/containers/create?name=${name}`, {
        body: {
          Image: imageId,
          Entrypoint: [RUNNER_IN_CONTAINER],
          Cmd: [],
          Env: [],
          WorkingDir: '/',
          User: `${engine.user.uid}:${engine.user.gid}`,
          Hostname: 'kiln',
          AttachStdin: true,
          AttachStdout: true,
          AttachStderr: true,
          OpenStdin: true,
          StdinOnce: false,
          Tty: false,
          NetworkDisabled: true,
          Labels: { [LABEL_WORKER]: this.options.workerId, [LABEL_TOOLCHAIN]: imageId },
          HostConfig: {
            NetworkMode: 'none',
            ReadonlyRootfs: true,
            CapDrop: ['ALL'],
            SecurityOpt: ['no-new-privileges'],
            // kiln-runner is one of the container's processes.
            PidsLimit: limits.processes + 1,
            Memory: limits.memoryBytes,
            MemorySwap: limits.memoryBytes,
            NanoCpus: Math.round(cpus * 1e9),
            Mounts: mounts,
            Ulimits: await ulimits(),
            LogConfig: { Type: 'none', Config: {} },
            IpcMode: 'private',
            ...(this.options.runtime ? { Runtime: this.options.runtime } : {}),
          },
        },
      })) as { Id: string };
      id = created.Id;
      const socket = await this.#engine.attach(id);
      const channel = new RunnerChannel(socket);
      await this.#engine.json('POST', `/containers/${id}/start`);
      const started = Date.now();
      await Promise.race([
        channel.ready,
        new Promise((_, reject) =>
          setTimeout(() => reject(new Error('kiln-runner did not answer within 20 s')), 20_000).unref(),
        ),
      ]).catch((err: Error) => {
        channel.destroy();
        throw err;
      });
      this.options.logger?.debug(`container ${id.slice(0, 12)} warm in ${Date.now() - started} ms`);
      return { id, imageId, key, slot, channel, idleSince: Date.now() };
    } catch (err) {
      if (id)
        await this.#engine
          .json('DELETE', `/containers/${id}?force=1&v=1`)
          .catch(() => this.#orphans.add(id!));
      await removeSlot(slot).catch(() => {});
      throw err;
    }
  }

  async #destroy(c: WarmContainer): Promise<void> {
    c.channel.destroy();
    await this.#engine.json('DELETE', `/containers/${c.id}?force=1&v=1`).catch(() => this.#orphans.add(c.id));
    await removeSlot(c.slot).catch(() => {});
  }

  async #removeOrphans(): Promise<void> {
    for (const id of this.#orphans) {
      try {
        await this.#engine.json('DELETE', `/containers/${id}?force=1&v=1`);
        this.#orphans.delete(id);
      } catch (err) {
        if (err instanceof EngineError && err.status === 404) this.#orphans.delete(id);
        else return;
      }
    }
  }

  /** Idle warm containers right now (for tests and status). */
  warmCount(): number {
    return this.#pool.idleCount();
  }

  /** Removes every warm container and slot; the images stay for the next start. */
  async close(): Promise<void> {
    await this.#pool.close();
    this.#engine.close();
  }

  /** The toolchain images this worker imported (for tests). */
  images() {
    return this.#images.list();
  }

  pruneImages() {
    return this.#images.prune();
  }
}
