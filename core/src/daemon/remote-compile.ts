/**
 * Sends one compile to the cluster, whatever its family: the family's RemotePlan says what the job
 * is (c-remote-plan.ts, rust-remote-plan.ts), this file finds its toolchain, a worker and runs it. Anything that goes wrong on the way answers
 * `undefined` (with the reason counted), and the caller compiles locally: the cluster can make a
 * build faster, never break it.
 */
import fs from 'node:fs';
import {
  KILN_ERR_RESOLVER_NO_DIST,
  type PackagedToolchain,
  type ToolchainResolver,
  type ToolchainSpec,
} from '@kiln/plugins';
import type { DistConfig } from '../cluster/client-config.js';
import { DistClient, DistError } from '../cluster/dist-client.js';
import { looksLikeCCompiler } from '../compiler/detect.js';
import type { Logger } from '../log.js';
import type { Stats } from '../stats/stats.js';
import { ClusterNotices, ClusterProblem, schedulerProblem } from './cluster-notices.js';
import { TinyCompiles } from './tiny-compiles.js';

/** A successful remote compile whose diagnostics the family accepted. */
export interface RemoteOutcome {
  readonly stdout: Buffer;
  readonly stderr: Buffer;
  /** Every declared output, by the path the plan's job named it. */
  readonly outputs: ReadonlyMap<string, Buffer>;
  readonly workerId: string;
}

/** One job as a worker runs it: paths of inputs and outputs are relative to `cwd`. */
export interface RemoteJob {
  readonly cwd: string;
  readonly argv: readonly string[];
  readonly env: Readonly<Record<string, string>>;
  readonly inputs: readonly { readonly path: string; readonly data: Buffer }[];
  readonly outputs: readonly string[];
}

/** What a compiler family hands the cluster for one compile (see c-remote-plan.ts, rust-remote-plan.ts). */
export interface RemotePlan {
  /** The compiler whose toolchain the resolvers package (or name by version). */
  readonly program: string;
  /** Why this compile stays local unless force_remote_build is set (a configure test). */
  readonly localUnlessForced?: string;
  /** For keep_tiny_local: the kind of code generation and the input's size. */
  readonly speed?: { readonly key: string; readonly bytes: number; readonly label: string };
  /** The job for the toolchain the worker will hold (`spec.compiler` is the compiler's path there). */
  job(spec: ToolchainSpec): RemoteJob;
  /**
   * Whether a successful job's stderr may be replayed as it is; false sends the compile back to the
   * local compiler, which prints the diagnostics the user expects.
   */
  acceptStderr(stderr: Buffer): boolean;
}

/** Signs that a failure came from the toolchain in the sandbox, not from the user's code. */
const INFRA_FAILURE =
  /error while loading shared libraries|cannot execute|installation problem|No such file or directory\s*$|cannot find (as|ld)\b/m;

/** The binary `program` runs, so that names of one compiler (cc, gcc) share a notice. */
function realBinary(program: string): string {
  try {
    return fs.realpathSync(program);
  } catch {
    return program;
  }
}

const sentKey = (workerId: string, digest: string) => `${workerId}\0${digest}`;

/** Why a toolchain lookup's answer keeps a compile local; undefined when it can be distributed. */
function unavailable(toolchain: PackagedToolchain | Error | undefined): string | undefined {
  if (!toolchain) return 'toolchain being packaged';
  if (!(toolchain instanceof Error)) return undefined;
  return (toolchain as { code?: string }).code === KILN_ERR_RESOLVER_NO_DIST.code
    ? 'no_dist toolchain'
    : 'toolchain cannot be packaged';
}

/** One distributable compile, as tried on a worker (twice at most). */
interface Job {
  readonly toolchain: PackagedToolchain;
  readonly plan: RemotePlan;
}

/** How one try on one worker ended. */
type Attempt =
  | { readonly kind: 'done'; readonly outcome: RemoteOutcome }
  /** Kept local by choice; `noWorker`: the scheduler had no worker for it. */
  | { readonly kind: 'local'; readonly reason: string; readonly noWorker?: boolean }
  /** Went wrong; `lostWorker`: the worker (not the job) failed, so another may succeed. */
  | {
      readonly kind: 'failed';
      readonly reason: string;
      readonly detail: string;
      readonly lostWorker?: string;
    };

export class RemoteCompiler {
  private readonly client: DistClient;
  /** Per compiler path: its packaged toolchain, or why it cannot be distributed. */
  private readonly packaged = new Map<string, PackagedToolchain | Error>();
  /** Per compiler path: the lookup of its stored package (milliseconds)… */
  private readonly lookups = new Map<string, Promise<void>>();
  /** …and, when there was none, its packaging (seconds). */
  private readonly packaging = new Map<string, Promise<void>>();
  /** Uploads in flight, by worker and digest: concurrent jobs share one. */
  private readonly uploads = new Map<string, Promise<void>>();
  /**
   * Toolchains this daemon sent, by worker and digest. The scheduler learns what a worker holds
   * from its heartbeats (every few seconds), and until then answers `hasToolchain: false`: without
   * this, each job in between sent the whole archive (45 MB for gcc) again.
   */
  private readonly sent = new Set<string>();
  private readonly tiny = new TinyCompiles();
  /** Cluster trouble and packaging, said once (see cluster-notices.ts). */
  readonly notices: ClusterNotices;

  constructor(
    private readonly config: DistConfig,
    /** Tried in order: the configured resolver plugins, then the built-in "archive". */
    private readonly resolvers: readonly ToolchainResolver[],
    private readonly stats: Stats,
    private readonly log: Logger,
  ) {
    this.client = new DistClient(config);
    this.notices = new ClusterNotices(log);
    if (config.insecure)
      log.warn(
        '[dist] insecure = true: plain http allowed; sources, objects and tokens may cross the network readable',
      );
  }

  /** Counts a compile that stays local for `reason` (distLocal). */
  keepLocal(reason: string): undefined {
    this.stats.dist('distLocal', reason);
    this.log.debug(`compiling locally: ${reason}`);
    return undefined;
  }

  private failed(reason: string, detail: string): undefined {
    this.stats.dist('distErrors', reason);
    this.log.warn(`remote compile failed (${detail}); compiling locally`);
    return undefined;
  }

  /**
   * The packaged toolchain when ready. A package stored by an earlier daemon is found in
   * milliseconds and waited for; packaging takes seconds and runs in the background meanwhile
   * (waited for only with force_remote_build).
   */
  private async toolchain(program: string): Promise<PackagedToolchain | Error | undefined> {
    if (!this.packaged.has(program) && !this.packaging.has(program)) {
      let lookup = this.lookups.get(program);
      if (!lookup) {
        lookup = this.lookUp(program).finally(() => this.lookups.delete(program));
        this.lookups.set(program, lookup);
      }
      await lookup;
    }
    const settled = this.packaged.get(program);
    if (settled || !this.config.force_remote_build) return settled;
    await this.packaging.get(program);
    return this.packaged.get(program);
  }

  /**
   * Finds a stored package of `program` (the first resolver that has one); when there is none,
   * starts packaging it with the first resolver that handles it.
   */
  private async lookUp(program: string): Promise<void> {
    for (const r of this.resolvers) {
      const found = await r.find?.(program).catch(() => undefined);
      if (found) {
        this.packaged.set(program, found);
        return;
      }
    }
    const work = this.packageWith(program)
      .then(
        (t) => void this.packaged.set(program, t),
        (err: Error) => {
          if ((err as { code?: string }).code === KILN_ERR_RESOLVER_NO_DIST.code)
            this.log.debug(`compiling ${program} locally: ${err.message}`);
          else this.log.warn(`cannot package ${program} for distribution: ${err.message}`);
          this.packaged.set(program, err);
        },
      )
      .finally(() => this.packaging.delete(program));
    this.packaging.set(program, work);
  }

  private async packageWith(program: string): Promise<PackagedToolchain> {
    for (const r of this.resolvers) {
      // Only kiln's own packing of a gcc or clang takes seconds; what other resolvers name is instant,
      // and the archive resolver declines anything else (rustc without rustup) at once.
      const real = realBinary(program);
      if (r.kind === 'archive' && looksLikeCCompiler(program, real))
        this.notices.packaging(real, program, this.config.force_remote_build);
      const packaged = await r.package?.(program);
      if (packaged) return packaged;
    }
    throw new Error(`no toolchain resolver handles it (${this.resolvers.map((r) => r.kind).join(', ')})`);
  }

  /** Sends a toolchain to a worker unless this daemon did already (or `again`: the worker lost it). */
  private upload(
    worker: { readonly id: string; readonly url: string },
    jobToken: string,
    { spec, archive }: PackagedToolchain,
    again = false,
  ): Promise<void> {
    // A toolchain named by version is never sent: the worker's resolver finds it when the job runs.
    if (!archive) return Promise.resolve();
    const key = sentKey(worker.id, spec.digest);
    if (again) this.sent.delete(key);
    if (this.sent.has(key)) return Promise.resolve();
    let p = this.uploads.get(key);
    if (!p) {
      p = this.client
        .uploadToolchain(worker.url, jobToken, spec.kind, spec.digest, archive)
        .then(() => void this.sent.add(key));
      this.uploads.set(key, p);
      p.catch(() => {}).finally(() => this.uploads.delete(key));
    }
    return p;
  }

  /**
   * Why `program` cannot go to the cluster now (no resolver names it, it is being packaged, it is
   * no_dist), or undefined when it can: for a family whose plan costs work to make (rustc's dep-info
   * run), asked first. The caller counts the reason (keepLocal).
   */
  async toolchainUnavailable(program: string): Promise<string | undefined> {
    return unavailable(await this.toolchain(program));
  }

  /** Runs a family's plan on the cluster; undefined (the reason counted) when it must compile locally. */
  async run(plan: RemotePlan): Promise<RemoteOutcome | undefined> {
    const force = this.config.force_remote_build;
    if (!force && plan.localUnlessForced) return this.keepLocal(plan.localUnlessForced);
    if (!force && this.config.keep_tiny_local && plan.speed) {
      const e = this.tiny.estimate(plan.speed.key, plan.speed.bytes);
      if (e)
        this.log.debug(
          `${plan.speed.label}: ~${e.compileMs.toFixed(1)} ms to compile, ~${e.overheadMs.toFixed(1)} ms of cluster overhead`,
        );
      if (e && e.compileMs < e.overheadMs) return this.keepLocal('tiny compile (faster locally)');
    }
    const toolchain = await this.toolchain(plan.program);
    const why = unavailable(toolchain);
    if (why || !toolchain || toolchain instanceof Error)
      return this.keepLocal(why ?? 'toolchain being packaged');
    const job: Job = { toolchain, plan };
    const first = await this.attempt(job, []);
    if (first.kind !== 'failed' || !first.lostWorker) return this.settle(first);
    // The worker died or broke under the job (sccache#2277): once more on another one, then locally.
    this.stats.dist('distRetries', 'retried');
    this.log.warn(`remote compile failed (${first.detail}); trying another worker`);
    const second = await this.attempt(job, [first.lostWorker]);
    this.stats.dist('distRetries', second.kind === 'done' ? 'succeeded' : 'compiled locally');
    // With no other worker to try, the first failure is why the compile goes local.
    return this.settle(second.kind === 'local' && second.noWorker ? first : second);
  }

  /** Counts how a compile's remote part ended; the object, or undefined to compile locally. */
  private settle(attempt: Attempt): RemoteOutcome | undefined {
    if (attempt.kind === 'local') return this.keepLocal(attempt.reason);
    if (attempt.kind === 'failed') return this.failed(attempt.reason, attempt.detail);
    this.stats.dist('distCompiles', attempt.outcome.workerId);
    return attempt.outcome;
  }

  /** A worker for the job, none of `exclude`. */
  private async allocate(spec: PackagedToolchain['spec'], exclude: readonly string[]) {
    const ref = { kind: spec.kind, digest: spec.digest, hostTriples: spec.hostTriples };
    if (exclude.length > 0) {
      try {
        return await this.client.allocate(ref, exclude);
      } catch (err) {
        // A scheduler older than `exclude` answers 400 to it: ask as before, and take only another worker.
        if (!(err instanceof DistError && err.status === 400)) throw err;
      }
    }
    const alloc = await this.client.allocate(ref);
    if (alloc.status === 'assigned' && exclude.includes(alloc.worker.id))
      return { status: 'no_capacity', reason: `only ${alloc.worker.id} again` } as const;
    return alloc;
  }

  /** One try on one worker: allocate, upload the toolchain if it lacks it, run. Never throws. */
  private async attempt(job: Job, exclude: readonly string[]): Promise<Attempt> {
    const { toolchain, plan } = job;
    const { spec } = toolchain;
    const startedMs = performance.now();
    let uploaded = false;
    let workerId: string | undefined;
    let workerUrl = '';
    /** A failure of the worker's own (not of the user's code, not a limit): said once per worker. */
    const workerFailed = (reason: string, detail: string): Attempt => {
      if (workerId) this.notices.workerTrouble(workerId, workerUrl, false, `${reason}: ${detail}`);
      return { kind: 'failed', reason, detail };
    };
    const failed = (reason: string, detail: string): Attempt => ({ kind: 'failed', reason, detail });
    try {
      const alloc = await this.allocate(spec, exclude);
      if (alloc.status !== 'assigned') {
        // "no capacity" is a full cluster; a host triple no worker serves is said by name.
        const reason = alloc.noWorker ? `no worker for ${spec.hostTriples.join(' or ')}` : 'no capacity';
        this.log.debug(`the scheduler has no worker for this job: ${alloc.reason}`);
        if (alloc.noWorker && exclude.length === 0)
          this.notices.problem(
            ClusterProblem.NO_WORKERS,
            `the scheduler has no worker for ${spec.hostTriples.join(' or ')} (${alloc.reason}): start \`kiln-dist worker\` with [scheduler] url and token pointing at ${this.config.scheduler_url}`,
          );
        if (!alloc.noWorker && exclude.length === 0) this.notices.full(alloc.reason);
        return { kind: 'local', reason, noWorker: true };
      }
      this.notices.working();
      const { worker, jobId, jobToken } = alloc;
      workerId = worker.id;
      workerUrl = worker.url;
      if (!alloc.hasToolchain && toolchain.archive && !this.sent.has(sentKey(worker.id, spec.digest)))
        uploaded = true;
      if (!alloc.hasToolchain) await this.upload(worker, jobToken, toolchain);
      const remoteJob = plan.job(spec);
      const header = {
        toolchain: {
          kind: spec.kind,
          digest: spec.digest,
          compiler: spec.compiler,
          ...(spec.version ? { version: spec.version } : {}),
          ...(spec.version && spec.targetTriple ? { targetTriple: spec.targetTriple } : {}),
        },
        cwd: remoteJob.cwd,
        argv: [...remoteJob.argv],
        env: remoteJob.env,
        inputs: remoteJob.inputs.map((i) => i.path),
        outputs: [...remoteJob.outputs],
        timeoutMs: this.config.job_timeout * 1000,
      };
      const blobs = remoteJob.inputs.map((i) => i.data);
      let result: Awaited<ReturnType<DistClient['run']>>;
      try {
        result = await this.client.run(worker.url, jobToken, jobId, header, blobs);
      } catch (err) {
        if (!(err instanceof DistError && err.toolchainMissing)) throw err;
        uploaded = true;
        await this.upload(worker, jobToken, toolchain, true);
        result = await this.client.run(worker.url, jobToken, jobId, header, blobs);
      }
      // What this job teaches about tiny compiles; a toolchain upload is no part of the usual overhead.
      const { elapsedMs } = result.header;
      if (typeof elapsedMs === 'number' && !uploaded && result.header.exitCode === 0 && plan.speed) {
        const totalMs = performance.now() - startedMs;
        this.tiny.record(plan.speed.key, plan.speed.bytes, elapsedMs, Math.max(0, totalMs - elapsedMs));
      }
      // The job ran and failed: another worker would fail it the same way.
      const { exitCode, timedOut, signal, limitExceeded } = result.header;
      if (timedOut) return failed('remote timeout', `job ${jobId} on ${worker.id} timed out`);
      // The worker's limit, not the user's code: compiled locally, where it may well fit.
      if (limitExceeded)
        return failed('remote limit', `job ${jobId} on ${worker.id} exceeded its ${limitExceeded} limit`);
      if (exitCode === null || signal) return workerFailed('remote crash', `killed by ${signal}`);
      if (exitCode !== 0 && (exitCode >= 126 || INFRA_FAILURE.test(result.stderr.toString()))) {
        return workerFailed(
          'toolchain broken on worker',
          result.stderr.toString().trim().split('\n')[0] ?? '',
        );
      }
      if (exitCode !== 0 || !plan.acceptStderr(result.stderr)) {
        this.log.debug(
          `job ${jobId} on ${worker.id}: exit ${exitCode}, diagnostics: ${result.stderr.toString().slice(0, 2000)}`,
        );
        return { kind: 'local', reason: 'diagnostics (rerun locally)' };
      }
      const outputs = new Map<string, Buffer>();
      for (const name of remoteJob.outputs) {
        const data = result.outputs.get(name);
        if (!data) return workerFailed('missing output', `worker ${worker.id} returned no ${name}`);
        outputs.set(name, data);
      }
      return {
        kind: 'done',
        outcome: { stdout: result.stdout, stderr: result.stderr, outputs, workerId: worker.id },
      };
    } catch (err) {
      if (!(err instanceof DistError)) return failed('internal', (err as Error).stack ?? String(err));
      const problem = schedulerProblem(err, this.config.scheduler_url);
      if (problem) this.notices.problem(problem.kind, problem.text);
      else if (workerId !== undefined && !err.toolchainMissing) {
        const unreachable = err.reason === 'worker unreachable';
        const detail = err.message.slice(err.reason.length + 2);
        this.notices.workerTrouble(
          workerId,
          workerUrl,
          unreachable,
          unreachable ? detail.replace(`${workerUrl}: `, '') : `${err.reason}: ${detail}`,
        );
      }
      const lost = err.workerLost && workerId !== undefined ? { lostWorker: workerId } : {};
      return { kind: 'failed', reason: err.reason, detail: err.message, ...lost };
    }
  }

  close(): Promise<void> {
    return this.client.close();
  }
}
