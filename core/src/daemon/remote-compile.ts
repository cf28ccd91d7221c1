/**
 * Sends one preprocessed compile to the cluster. Anything that goes wrong on the way answers
 * `undefined` (with the reason counted), and the caller compiles locally: the cluster can make a
 * build faster, never break it.
 */
import path from 'node:path';
import { KILN_ERR_RESOLVER_NO_DIST, type PackagedToolchain, type ToolchainResolver } from '@kiln/plugins';
import type { DistConfig } from '../cluster/client-config.js';
import { DistClient, DistError } from '../cluster/dist-client.js';
import { type CacheableCompile, Languages } from '../compiler/gcc-args.js';
import type { Logger } from '../log.js';
import type { Stats } from '../stats/stats.js';
import { codegenKey, TinyCompiles } from './tiny-compiles.js';

/** A successful remote compile that printed no diagnostics. */
export interface RemoteOutcome {
  readonly stdout: Buffer;
  readonly object: Buffer;
  readonly workerId: string;
}

/** Signs that a failure came from the toolchain in the sandbox, not from the user's code. */
const INFRA_FAILURE =
  /error while loading shared libraries|cannot execute|installation problem|No such file or directory\s*$|cannot find (as|ld)\b/m;
const INPUT_NAME = 'kiln-input';
const OUTPUT_NAME = 'kiln-output.o';
/** Environment passed into the sandbox when the client has it: what gcc/clang read. */
const JOB_ENV = ['SOURCE_DATE_EPOCH', 'GCC_COLORS', 'CCC_OVERRIDE_OPTIONS'];

const BUILTIN_MARKER = Buffer.from('# 0 "<built-in>"\n');
const DEFINE = Buffer.from('#define ');

/**
 * gcc's -fdirectives-only output starts with its built-in macros (`# 0 "<built-in>"` blocks before
 * the first other line marker); the remote compiler defines them itself, and defining them twice
 * is an error for some. Only that leading part is scanned: the rest, which is nearly all of it, is
 * passed on as it is.
 */
export function stripBuiltinDefines(text: Buffer): Buffer {
  const kept: Buffer[] = [];
  let pos = 0;
  let builtin = false;
  let markers = 0;
  while (pos < text.length) {
    const nl = text.indexOf(10, pos);
    const end = nl < 0 ? text.length : nl + 1;
    if (text[pos] === 0x23 && text[pos + 1] === 0x20) {
      // "# …": a line marker. The file's name and, with -g, the working directory come first; the
      // first other marker after the built-in block ends the scan (so does a third one before any).
      const isBuiltin = text.subarray(pos, end).equals(BUILTIN_MARKER);
      if (!isBuiltin && (builtin || ++markers > 2)) break;
      builtin = isBuiltin;
      kept.push(text.subarray(pos, end));
    } else if (!(builtin && text.subarray(pos, pos + DEFINE.length).equals(DEFINE))) {
      kept.push(text.subarray(pos, end));
    }
    pos = end;
  }
  kept.push(text.subarray(pos));
  return Buffer.concat(kept);
}

/**
 * Where the remote input goes and how the compile names it. Directives-only output is compiled
 * as source at the path the user typed, so debug info names the same file; inputs outside the
 * working directory sit below it and -fdebug-prefix-map (not recorded in the object) maps them back.
 */
function remoteInput(parsed: CacheableCompile, cwd: string, preprocessed: Buffer) {
  if (!parsed.remote.ok || parsed.remote.style === 'preprocessed') {
    const lang = Languages[parsed.language].preprocessed!;
    const name = `${INPUT_NAME}.${lang === 'c++-cpp-output' ? 'ii' : 'i'}`;
    return { inputs: [{ path: name, data: preprocessed }], inputArg: name, mapArgs: [], lang };
  }
  const data = stripBuiltinDefines(preprocessed);
  // Everything is inlined already; -nostdinc (not recorded in the object) stops gcc looking for
  // stdc-predef.h in a root that has no headers.
  const common = ['-nostdinc'];
  const typed = parsed.input;
  if (path.isAbsolute(typed)) {
    const base = path.join(cwd, '.kiln-abs');
    return {
      inputs: [{ path: path.join(base, typed), data }],
      inputArg: path.join(base, typed),
      mapArgs: [...common, `-fdebug-prefix-map=${base}=`],
      lang: parsed.language,
    };
  }
  const ups = /^(\.\.\/)+/.exec(path.posix.normalize(typed))?.[0].length ?? 0;
  if (ups === 0)
    return { inputs: [{ path: typed, data }], inputArg: typed, mapArgs: common, lang: parsed.language };
  // "../src/a.c" becomes ".kiln-up/1/../src/a.c": the same name once the prefix is mapped away.
  const depth = ups / 3;
  const stem = `.kiln-up/${Array.from({ length: depth }, (_, i) => i + 1).join('/')}/`;
  const real = path.posix.normalize(stem + typed);
  return {
    inputs: [
      { path: real, data },
      { path: `${stem}.keep`, data: Buffer.alloc(0) },
    ],
    inputArg: stem + typed,
    mapArgs: [...common, `-fdebug-prefix-map=${stem}=`],
    lang: parsed.language,
  };
}

const sentKey = (workerId: string, digest: string) => `${workerId}\0${digest}`;

/** One distributable compile, as tried on a worker (twice at most). */
interface Job {
  readonly toolchain: PackagedToolchain;
  readonly parsed: CacheableCompile;
  readonly preprocessed: Buffer;
  readonly cwd: string;
  readonly env: Readonly<Record<string, string>>;
  readonly speedKey: string;
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

  constructor(
    private readonly config: DistConfig,
    /** Tried in order: the configured resolver plugins, then the built-in "archive". */
    private readonly resolvers: readonly ToolchainResolver[],
    private readonly stats: Stats,
    private readonly log: Logger,
  ) {
    this.client = new DistClient(config);
    if (config.insecure)
      log.warn(
        '[dist] insecure = true: plain http allowed; sources, objects and tokens may cross the network readable',
      );
  }

  private local(reason: string): undefined {
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

  async compile(
    program: string,
    parsed: CacheableCompile,
    preprocessed: Buffer,
    cwd: string,
    env: Readonly<Record<string, string>>,
  ): Promise<RemoteOutcome | undefined> {
    if (!parsed.remote.ok) return this.local(parsed.remote.reason);
    if (!this.config.force_remote_build && path.basename(parsed.input).startsWith('conftest'))
      return this.local('configure test');
    const speedKey = codegenKey(program, parsed.language, parsed.remote.compileArgs);
    if (!this.config.force_remote_build && this.config.keep_tiny_local) {
      const e = this.tiny.estimate(speedKey, preprocessed.length);
      if (e)
        this.log.debug(
          `${parsed.input}: ~${e.compileMs.toFixed(1)} ms to compile, ~${e.overheadMs.toFixed(1)} ms of cluster overhead`,
        );
      if (e && e.compileMs < e.overheadMs) return this.local('tiny compile (faster locally)');
    }
    const toolchain = await this.toolchain(program);
    if (!toolchain) return this.local('toolchain being packaged');
    if (toolchain instanceof Error)
      return this.local(
        (toolchain as { code?: string }).code === KILN_ERR_RESOLVER_NO_DIST.code
          ? 'no_dist toolchain'
          : 'toolchain cannot be packaged',
      );
    const job: Job = { toolchain, parsed, preprocessed, cwd, env, speedKey };
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
    if (attempt.kind === 'local') return this.local(attempt.reason);
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
    const { toolchain, parsed, preprocessed, cwd, env, speedKey } = job;
    if (!parsed.remote.ok) return { kind: 'local', reason: parsed.remote.reason };
    const { spec } = toolchain;
    const startedMs = performance.now();
    let uploaded = false;
    let workerId: string | undefined;
    const failed = (reason: string, detail: string): Attempt => ({ kind: 'failed', reason, detail });
    try {
      const alloc = await this.allocate(spec, exclude);
      if (alloc.status !== 'assigned') {
        // "no capacity" is a full cluster; a host triple no worker serves is said by name.
        const reason = alloc.noWorker ? `no worker for ${spec.hostTriples.join(' or ')}` : 'no capacity';
        this.log.debug(`the scheduler has no worker for this job: ${alloc.reason}`);
        return { kind: 'local', reason, noWorker: true };
      }
      const { worker, jobId, jobToken } = alloc;
      workerId = worker.id;
      if (!alloc.hasToolchain && !this.sent.has(sentKey(worker.id, spec.digest))) uploaded = true;
      if (!alloc.hasToolchain) await this.upload(worker, jobToken, toolchain);
      const { inputs, inputArg, mapArgs, lang } = remoteInput(parsed, cwd, preprocessed);
      const jobEnv: Record<string, string> = { PATH: '/usr/bin:/bin' };
      for (const name of JOB_ENV) if (env[name] !== undefined) jobEnv[name] = env[name];
      // Only the C.UTF-8 locale travels with a toolchain: it keeps gcc's UTF-8 quotes in messages.
      if (/utf-?8/i.test(env.LC_ALL || env.LC_MESSAGES || env.LANG || '')) jobEnv.LC_ALL = 'C.UTF-8';
      const header = {
        toolchain: { kind: spec.kind, digest: spec.digest, compiler: spec.compiler },
        cwd,
        argv: [
          spec.compiler,
          ...parsed.remote.compileArgs,
          ...mapArgs,
          '-x',
          lang,
          inputArg,
          '-o',
          OUTPUT_NAME,
        ],
        env: jobEnv,
        inputs: inputs.map((i) => i.path),
        outputs: [OUTPUT_NAME],
        timeoutMs: this.config.job_timeout * 1000,
      };
      const blobs = inputs.map((i) => i.data);
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
      if (typeof elapsedMs === 'number' && !uploaded && result.header.exitCode === 0) {
        const totalMs = performance.now() - startedMs;
        this.tiny.record(speedKey, preprocessed.length, elapsedMs, Math.max(0, totalMs - elapsedMs));
      }
      // The job ran and failed: another worker would fail it the same way.
      const { exitCode, timedOut, signal, limitExceeded } = result.header;
      if (timedOut) return failed('remote timeout', `job ${jobId} on ${worker.id} timed out`);
      // The worker's limit, not the user's code: compiled locally, where it may well fit.
      if (limitExceeded)
        return failed('remote limit', `job ${jobId} on ${worker.id} exceeded its ${limitExceeded} limit`);
      if (exitCode === null || signal) return failed('remote crash', `killed by ${signal}`);
      if (exitCode !== 0 && (exitCode >= 126 || INFRA_FAILURE.test(result.stderr.toString()))) {
        return failed('toolchain broken on worker', result.stderr.toString().trim().split('\n')[0] ?? '');
      }
      // Diagnostics from the remote input would quote the wrong source lines (all headers are
      // inlined into one file): the local compiler produces the exact ones the user expects.
      if (exitCode !== 0 || result.stderr.length > 0)
        return { kind: 'local', reason: 'diagnostics (rerun locally)' };
      const object = result.outputs.get(OUTPUT_NAME);
      if (!object) return failed('missing output', `worker ${worker.id} returned no object`);
      return { kind: 'done', outcome: { stdout: result.stdout, object, workerId: worker.id } };
    } catch (err) {
      if (!(err instanceof DistError)) return failed('internal', (err as Error).stack ?? String(err));
      const lost = err.workerLost && workerId !== undefined ? { lostWorker: workerId } : {};
      return { kind: 'failed', reason: err.reason, detail: err.message, ...lost };
    }
  }

  close(): Promise<void> {
    return this.client.close();
  }
}
