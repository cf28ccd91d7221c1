/**
 * rustc through kiln (`RUSTC_WRAPPER=kiln cargo build`). A crate compile is looked up by a direct
 * key — rustc's identity, the arguments that matter, the working directory, the source, every
 * `--extern` crate and static library by content, the CARGO_* environment — and a manifest that
 * lists what earlier compiles with that key read according to rustc's own dep-info: source files
 * (`mod`, `include!`, `include_str!`, files a build script wrote) by digest and the variables
 * `env!`/`option_env!` looked up. A hit costs no rustc run at all; a miss compiles once (plus a
 * dep-info-only run when the call itself asked for no dep-info) and stores the outputs.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  digestBuffer,
  type FileDigestCache,
  KeyHasher,
  statSignature,
  TOO_NEW_MARGIN_MS,
} from '../cache/digest.js';
import type { CachedResult, CacheEntries, ManifestEntry } from '../cache/entries.js';
import { readOutputFile, writeOutputFile } from '../cache/outputs.js';
import { findExecutable } from '../client/find-executable.js';
import { Action, type Response } from '../client/protocol.js';
import { parseRustDepInfo } from '../compiler/depfile.js';
import { runCaptured } from '../compiler/run.js';
import { parseRustcArgs, type RustCompile, rustOutputs, withoutEmit } from '../compiler/rustc-args.js';
import { noDist } from '../config.js';
import type { Logger } from '../log.js';
import type { Stats } from '../stats/stats.js';
import type { CompileRequest } from './compile-request.js';
import { type CompileRun, type CompileSuccess, getCachedOrCompile, type Lookup } from './lifecycle.js';
import type { RemoteCompiler, RemoteOutcome } from './remote-compile.js';
import { rustKeptLocal, rustRemotePlan } from './rust-remote-plan.js';
import { scratchFile } from './scratch.js';

/** Bump when the key recipe or entry layout changes. */
const KEY_VERSION = 'kiln-rust-2';
const LANGUAGE = 'Rust';
/** More libraries than this in `-L` directories: a system directory, not a build's own; not cached. */
const MAX_SEARCH_LIBRARIES = 256;

const hostCpu = () => `${process.arch} ${os.cpus()[0]?.model ?? 'unknown'}`;

/**
 * CARGO_* variables that name where things are or how cargo itself runs, never what a crate is:
 * everything else cargo sets (package name, version, manifest dir, features for build scripts…)
 * joins the key, since a proc-macro may read it without rustc knowing.
 */
const CARGO_ENV_IGNORED =
  /^CARGO_(MAKEFLAGS|HOME|TARGET_DIR|BUILD_JOBS|TERM_.*|LOG|HTTP_.*|NET_.*|REGISTRY_.*|REGISTRIES_.*|INCREMENTAL|ENCODED_RUSTFLAGS|CACHE_RUSTC_INFO)$/;
/** Other variables that change what rustc or the proc-macro linker produce. */
const KEY_ENV = [
  'RUSTC_BOOTSTRAP',
  // Stands in for rustc's version in every crate's metadata and symbol hashes, stable rustc too.
  'RUSTC_FORCE_RUSTC_VERSION',
  'RUST_TARGET_PATH',
  'LIBRARY_PATH',
  // Apple targets: the deployment target is in the LLVM triple and every object, the SDK in what links.
  'MACOSX_DEPLOYMENT_TARGET',
  'IPHONEOS_DEPLOYMENT_TARGET',
  'TVOS_DEPLOYMENT_TARGET',
  'WATCHOS_DEPLOYMENT_TARGET',
  'XROS_DEPLOYMENT_TARGET',
  'SDKROOT',
];

/** The environment that joins a crate's direct key, as [name, value]; undefined: unset. */
export function keyEnvironment(env: Readonly<Record<string, string>>): [string, string | undefined][] {
  const cargo = Object.keys(env)
    .filter((name) => name.startsWith('CARGO_') && !CARGO_ENV_IGNORED.test(name))
    .sort();
  return [...cargo, ...KEY_ENV].map((name) => [name, env[name]]);
}

interface RustcIdentity {
  readonly digest: string;
  readonly host: string;
  readonly sysroot: string;
}

/** A file kiln names in a manifest, as rustc's dep-info gave it, with its digest. */
type FileDigests = [string, string][];

/** rustup's proxies are links to the rustup binary: symbolic (rustup today) or hard (older rustup). */
function isRustupProxy(program: string): boolean {
  if (path.basename(fs.realpathSync(program)).startsWith('rustup')) return true;
  const rustup = path.join(path.dirname(program), 'rustup');
  try {
    const a = fs.statSync(program);
    const b = fs.statSync(rustup);
    return a.dev === b.dev && a.ino === b.ino;
  } catch {
    return false;
  }
}

/** Names, sizes and mtimes of a directory's files: enough to notice a replaced toolchain library. */
function listing(dir: string): string {
  try {
    return fs
      .readdirSync(dir, { withFileTypes: true })
      .filter((e) => e.isFile())
      .map((e) => {
        const st = fs.statSync(path.join(dir, e.name));
        return `${e.name}:${st.size}:${st.mtimeMs}`;
      })
      .sort()
      .join('\n');
  } catch {
    return '';
  }
}

/**
 * Cargo hands rustc its jobserver as inherited file descriptors. A compile started by the daemon
 * does not have them, and rustc warns about the dangling numbers: drop them so it uses its own.
 */
function withoutFdJobserver(env: Readonly<Record<string, string>>): Record<string, string> {
  const out = { ...env };
  for (const name of ['CARGO_MAKEFLAGS', 'MAKEFLAGS', 'MFLAGS']) {
    const value = out[name];
    if (value === undefined) continue;
    out[name] = value
      .split(' ')
      .filter((t) => !/^--jobserver-(fds|auth)=\d+,\d+$/.test(t))
      .join(' ');
  }
  return out;
}

/**
 * The crate's build-script output directory, when OUT_DIR has the shape cargo gives it
 * (`…/build/<package>-<hash>/out`). Cargo runs the build script to completion before it starts the
 * crate's compile, and nothing writes there during it (cargo locks the target dir), so what the script
 * wrote is final however recently: it never counts as changed during the compile.
 */
export function buildScriptOutDir(env: Readonly<Record<string, string>>): string | undefined {
  const dir = env.OUT_DIR;
  return dir && path.isAbsolute(dir) && /\/build\/[^/]+-[0-9a-f]{16}\/out$/.test(dir) ? dir : undefined;
}

const envDigest = (value: string | undefined): string | null =>
  value === undefined ? null : digestBuffer(Buffer.from(value));

/** Replaces the output directory a cached entry was made in with the current one. */
function relocate(data: Buffer, from: string, to: string, encode: (p: string) => string): Buffer {
  if (from === to) return data;
  return Buffer.from(data.toString('latin1').replaceAll(encode(from), encode(to)), 'latin1');
}
const asLatin1 = (p: string) => Buffer.from(`${p}/`).toString('latin1');
/** rustc's dep-info escapes spaces in the paths of the files a crate read. */
const depEscape = (p: string) => asLatin1(p).replaceAll(' ', '\\ ');
/** Artifact notifications (`--json=artifacts`) carry output paths as JSON strings. */
const jsonEscape = (p: string) => Buffer.from(JSON.stringify(`${p}/`).slice(1, -1)).toString('latin1');

/**
 * The dep-info with its output directory replaced. rustc writes an output rule per output, the
 * output as it is (`/t dir/deps/liba.rlib: src/lib.rs`), then a phony rule per file read, escaped
 * (`src/a\ b.rs:`), then `# env-dep:` lines, which hold the variables' values and stay as they are.
 */
export function relocateDepInfo(data: Buffer, from: string, to: string): Buffer {
  if (from === to) return data;
  const [plainFrom, plainTo] = [asLatin1(from), asLatin1(to)];
  const lines = data
    .toString('latin1')
    .split('\n')
    .map((line) => {
      if (line.startsWith('#')) return line;
      const output = !line.endsWith(':') && line.startsWith(plainFrom);
      const rest = output ? line.slice(plainFrom.length) : line;
      return (output ? plainTo : '') + rest.replaceAll(depEscape(from), depEscape(to));
    });
  return Buffer.from(lines.join('\n'), 'latin1');
}

export class RustCompileService {
  /** By the rustc binary (never a rustup proxy), checked against its stat; null: not rustc. */
  private readonly identities = new Map<string, { signature: string; identity: RustcIdentity | null }>();

  constructor(
    private readonly entries: CacheEntries,
    private readonly stats: Stats,
    private readonly digests: FileDigestCache,
    private readonly log: Logger,
    private readonly remote?: RemoteCompiler,
  ) {}

  /** Undefined when `program` is not rustc: the caller runs it unchanged. */
  async handle(program: string, args: readonly string[], req: CompileRequest): Promise<Response | undefined> {
    const asTyped: Response = { action: Action.EXEC, program, argv: [program, ...args] };
    const uncached = (reason: string) => {
      this.stats.nonCacheable(reason);
      this.stats.language(LANGUAGE, 'uncached');
      this.log.debug(`rustc not cached: ${reason}`);
      return asTyped;
    };
    const found = await this.identify(program, req);
    if (!found) return undefined;
    const { rustc, identity } = found;
    const parsed = parseRustcArgs(args, req.cwd);
    if (!parsed.cacheable) return uncached(parsed.reason);
    const outputs = rustOutputs(parsed, identity.host);
    if (!outputs) return uncached(`output names for target ${parsed.target}`);
    const startedMs = Date.now();
    const keyed = await this.directKey(identity, parsed, req);
    if ('reason' in keyed) return uncached(keyed.reason);
    const directKey = keyed.key;

    const self = this;
    async function* lookup(): AsyncGenerator<Lookup> {
      const hit = await self.lookup(directKey, req);
      if (hit) yield { result: hit, counter: 'hitsDirect' };
    }
    return getCachedOrCompile(
      {
        language: LANGUAGE,
        lookup,
        replay: (result) => this.replay(result, outputs, parsed, req.umask),
        remote: async () => {
          if (!this.remote || noDist(req.env)) return undefined;
          // Before the dep-info run: a rustc no resolver names (no rustup resolver) stays local at once.
          const why = rustKeptLocal(parsed) ?? (await this.remote.toolchainUnavailable(rustc));
          if (why) return { local: why };
          const planned = await rustRemotePlan({
            rustc,
            sysroot: identity.sysroot,
            parsed,
            outputs,
            req,
            env: withoutFdJobserver(req.env),
            keyEnv: keyEnvironment(req.env),
            log: this.log,
          });
          if ('local' in planned) return planned;
          return {
            plan: planned.plan,
            accept: (outcome) => this.acceptRemote(outcome, planned.base, outputs, req.umask),
          };
        },
        local: () => this.compile(rustc, parsed, req),
        store: (run) => this.storeRun(rustc, run, outputs, directKey, parsed, req, startedMs),
      },
      this.stats,
      this.remote,
    );
  }

  /**
   * The rustc to run and its identity: `-vV`, the sysroot and its libraries. Null: the program is
   * not rustc. A rustup proxy chooses its toolchain on every call (RUSTUP_TOOLCHAIN, overrides,
   * rust-toolchain.toml, the default — any of which may change between calls), so kiln asks it for
   * the sysroot each time and works with that toolchain's own rustc. Cargo passes the real rustc.
   */
  private async identify(
    program: string,
    req: CompileRequest,
  ): Promise<{ rustc: string; identity: RustcIdentity } | null> {
    let rustc = program;
    if (isRustupProxy(program)) {
      const sysroot = await this.sysroot(program, req);
      if (!sysroot) return null;
      rustc = path.join(sysroot, 'bin', 'rustc');
      if (!fs.existsSync(rustc) || isRustupProxy(rustc)) return null;
    }
    const signature = statSignature(rustc);
    const known = this.identities.get(rustc);
    if (known?.signature === signature) return known.identity && { rustc, identity: known.identity };
    const identity = await this.askRustc(rustc, req);
    this.identities.set(rustc, { signature, identity });
    return identity && { rustc, identity };
  }

  private async sysroot(program: string, req: CompileRequest): Promise<string | undefined> {
    const run = await runCaptured(
      program,
      program,
      ['--print', 'sysroot'],
      req.cwd,
      withoutFdJobserver(req.env),
    );
    const sysroot = run.stdout.toString().trim();
    return run.exitCode === 0 && !run.failure && sysroot ? sysroot : undefined;
  }

  private async askRustc(program: string, req: CompileRequest): Promise<RustcIdentity | null> {
    const vv = await runCaptured(program, program, ['-vV'], req.cwd, withoutFdJobserver(req.env));
    const text = vv.stdout.toString();
    const host = /^host: (\S+)$/m.exec(text)?.[1];
    if (vv.exitCode !== 0 || vv.failure || !/^rustc \S+/.test(text) || !host) return null;
    const sysroot = await this.sysroot(program, req);
    if (!sysroot) return null;
    const h = new KeyHasher()
      .add('vV', text)
      .add('sysroot', sysroot)
      .add('lib', listing(path.join(sysroot, 'lib')));
    const rustlib = path.join(sysroot, 'lib', 'rustlib');
    for (const triple of fs.existsSync(rustlib) ? fs.readdirSync(rustlib).sort() : []) {
      h.add(`rustlib:${triple}`, listing(path.join(rustlib, triple, 'lib')));
    }
    return { digest: h.digest(), host, sysroot };
  }

  /** The direct key, or why there is none (an input kiln cannot read or hash). */
  private async directKey(
    identity: RustcIdentity,
    parsed: RustCompile,
    req: CompileRequest,
  ): Promise<{ key: string } | { reason: string }> {
    const source = this.digests.get(path.resolve(req.cwd, parsed.input));
    if (!source) return { reason: 'unreadable source file' };
    const h = new KeyHasher()
      .add('version', KEY_VERSION)
      .add('rustc', identity.digest)
      .add('cwd', req.cwd)
      .add('input', parsed.input)
      .add('source', source.digest)
      .addList('args', parsed.keyArgs);
    for (const [name, file] of parsed.externs) {
      const d = this.digests.get(file);
      if (!d) return { reason: 'unreadable extern crate' };
      h.add(`extern:${name}`, d.digest);
    }
    const libraries = this.searchDirLibraries(parsed.searchDirs);
    if (!libraries) return { reason: 'too many libraries in -L directories' };
    for (const [file, digest] of libraries) h.add(`lib:${file}`, digest);
    if (parsed.keyHostCpu) h.add('cpu', hostCpu());
    if (parsed.target?.endsWith('.json')) {
      h.add('target-spec', this.digests.get(path.resolve(req.cwd, parsed.target))?.digest ?? 'missing');
    }
    for (const [name, value] of keyEnvironment(req.env)) h.add(`env:${name}`, value);
    if (parsed.crateTypes.includes('proc-macro')) h.add('linker', await this.linkerIdentity(parsed, req));
    return { key: h.digest() };
  }

  /**
   * Digests of the libraries in `-L` directories that can end up in the output (see SearchDir);
   * undefined when there are too many to hash (a system directory given as `-L native=`).
   */
  private searchDirLibraries(dirs: RustCompile['searchDirs']): [string, string][] | undefined {
    const out: [string, string][] = [];
    for (const { kind, dir } of dirs) {
      const wanted = (name: string) =>
        ((kind === 'native' || kind === 'all') && name.endsWith('.a')) ||
        ((kind === 'crate' || kind === 'all') && /\.(rlib|rmeta)$/.test(name));
      let names: string[];
      try {
        names = fs.readdirSync(dir).filter(wanted).sort();
      } catch {
        continue; // a missing directory: rustc finds nothing there either
      }
      for (const name of names) {
        if (out.length >= MAX_SEARCH_LIBRARIES) return undefined;
        const file = path.join(dir, name);
        out.push([file, this.digests.get(file)?.digest ?? 'unreadable']);
      }
    }
    return out;
  }

  /** A proc-macro is linked by the system linker (`cc` unless -C linker): its binary and version join the key. */
  private async linkerIdentity(parsed: RustCompile, req: CompileRequest): Promise<string> {
    const linker = findExecutable(parsed.linker ?? 'cc', req.env.PATH, req.cwd, new Set());
    if (!linker) return 'none';
    const d = this.digests.get(linker);
    const version = await runCaptured(linker, linker, ['--version'], req.cwd, req.env);
    return `${linker}:${d?.digest}:${version.stdout.toString()}`;
  }

  /** The newest manifest entry whose files and environment match the current ones. */
  private async lookup(directKey: string, req: CompileRequest): Promise<CachedResult | undefined> {
    for (const entry of (await this.entries.readManifest(directKey)) ?? []) {
      const filesMatch = entry.files.every(
        ([file, digest]) => this.digests.get(path.resolve(req.cwd, file))?.digest === digest,
      );
      const envMatches = (entry.env ?? []).every(([name, digest]) => envDigest(req.env[name]) === digest);
      if (!filesMatch || !envMatches) continue;
      const result = await this.entries.readResult(entry.result);
      if (result) return result;
    }
    return undefined;
  }

  /** Writes a cached crate's outputs; undefined when one is missing or cannot be written. */
  private replay(
    result: CachedResult,
    outputs: [string, string][],
    parsed: RustCompile,
    umask: number | undefined,
  ): Response | undefined {
    const storedDir = result.meta.outDir ?? parsed.outDir;
    try {
      for (const [kind, file] of outputs) {
        const data = result.files.get(kind);
        if (!data) return undefined;
        const bytes = kind === 'dep-info' ? relocateDepInfo(data, storedDir, parsed.outDir) : data;
        writeOutputFile('/', file, bytes, { mode: kind === 'proc-macro' ? 0o777 : 0o666, umask });
      }
    } catch (err) {
      this.stats.error('output write');
      this.log.info(`cannot write rustc outputs: ${(err as Error).message}`);
      return undefined;
    }
    return {
      action: Action.RESULT,
      exitCode: 0,
      stdout: result.stdout,
      stderr: relocate(result.stderr, storedDir, parsed.outDir, jsonEscape),
    };
  }

  /** Writes a crate a worker compiled (outputs named relative to `base`); undefined: compile locally. */
  private acceptRemote(
    outcome: RemoteOutcome,
    base: string,
    outputs: [string, string][],
    umask: number | undefined,
  ): CompileRun | undefined {
    try {
      for (const [kind, file] of outputs) {
        const data = outcome.outputs.get(path.relative(base, file))!;
        writeOutputFile('/', file, data, { mode: kind === 'proc-macro' ? 0o777 : 0o666, umask });
      }
    } catch (err) {
      this.stats.error('output write');
      this.log.info(`cannot write rustc outputs: ${(err as Error).message}`);
      return undefined;
    }
    const { stdout, stderr } = outcome;
    return { stdout, stderr, success: { action: Action.RESULT, exitCode: 0, stdout, stderr } };
  }

  /** The real compile on this machine. */
  private async compile(program: string, parsed: RustCompile, req: CompileRequest): Promise<CompileRun> {
    const env = withoutFdJobserver(req.env);
    const run = await runCaptured(program, program, parsed.args, req.cwd, env, req.umask);
    if (run.failure) {
      this.stats.error('compiler crashed');
      return { response: { action: Action.EXEC, program, argv: [program, ...parsed.args] } };
    }
    const response: Response = {
      action: Action.RESULT,
      exitCode: run.exitCode,
      stdout: run.stdout,
      stderr: run.stderr,
    };
    if (run.exitCode !== 0) {
      this.stats.count('compileFailed');
      this.stats.language(LANGUAGE, 'failed');
      return { response };
    }
    return { stdout: run.stdout, stderr: run.stderr, success: response };
  }

  /** Stores the outputs and a manifest entry from rustc's dep-info. */
  private async storeRun(
    program: string,
    run: CompileSuccess,
    outputs: [string, string][],
    directKey: string,
    parsed: RustCompile,
    req: CompileRequest,
    startedMs: number,
  ): Promise<void> {
    const asked = outputs.find(([kind]) => kind === 'dep-info')?.[1];
    if (asked) {
      await this.store(directKey, run.stdout, run.stderr, outputs, asked, parsed, req, startedMs);
      return;
    }
    // The call did not ask for dep-info. Adding it to the compile would change the crate's hash
    // (rustc hashes the set of emitted kinds), so a second, dep-info-only run lists the inputs.
    const own = scratchFile('rust');
    try {
      const deps = await runCaptured(
        program,
        program,
        [...withoutEmit(parsed.args), `--emit=dep-info=${own}`],
        req.cwd,
        withoutFdJobserver(req.env),
      );
      if (deps.exitCode === 0 && !deps.failure) {
        await this.store(directKey, run.stdout, run.stderr, outputs, own, parsed, req, startedMs);
      }
    } finally {
      fs.rmSync(own, { force: true });
    }
  }

  private async store(
    directKey: string,
    stdout: Buffer,
    stderr: Buffer,
    outputs: [string, string][],
    depInfoFile: string,
    parsed: RustCompile,
    req: CompileRequest,
    startedMs: number,
  ): Promise<void> {
    const depInfo = parseRustDepInfo(readOutputFile('/', depInfoFile)?.toString() ?? '');
    const files = depInfo && this.trustedDigests(depInfo.files, req, startedMs);
    if (!depInfo || !files) {
      this.log.debug(
        `${parsed.crateName}: not stored (dep-info missing or a source changed during the compile)`,
      );
      return;
    }
    const blobs: [string, Buffer][] = [];
    for (const [kind, file] of outputs) {
      const data = readOutputFile('/', file);
      if (!data) {
        this.stats.error('missing output');
        this.log.warn(`not storing ${parsed.crateName}: ${file} was not produced`);
        return;
      }
      blobs.push([kind, data]);
    }
    const env = depInfo.env.map(([name]) => [name, envDigest(req.env[name])] as const);
    const h = new KeyHasher().add('version', KEY_VERSION).add('direct', directKey);
    for (const [file, digest] of files) h.add(`file:${file}`, digest);
    for (const [name, digest] of env) h.add(`env:${name}`, digest ?? undefined);
    const resultKey = h.digest();
    await this.entries.putResult(resultKey, stdout, stderr, blobs, { outDir: parsed.outDir });
    const entry: ManifestEntry = { files, env, result: resultKey };
    await this.entries.addManifestEntry(directKey, entry);
  }

  /** Digests of the files rustc read, or undefined when one is unreadable or changed during the compile. */
  private trustedDigests(
    files: readonly string[],
    req: CompileRequest,
    startedMs: number,
  ): FileDigests | undefined {
    const out: FileDigests = [];
    const generated = buildScriptOutDir(req.env);
    for (const file of files) {
      const absolute = path.resolve(req.cwd, file);
      const d = this.digests.get(absolute);
      const final = generated !== undefined && absolute.startsWith(`${generated}/`);
      if (!d || (!final && d.changedMs >= startedMs - TOO_NEW_MARGIN_MS)) {
        this.log.debug(`rust manifest off: ${file} ${d ? 'is too new' : 'cannot be read'}`);
        return undefined;
      }
      out.push([file, d.digest]);
    }
    return out;
  }
}
