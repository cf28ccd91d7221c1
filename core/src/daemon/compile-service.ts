import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { type FileDigestCache, KeyHasher, statSignature, TOO_NEW_MARGIN_MS } from '../cache/digest.js';
import { type CachedResult, CacheEntries } from '../cache/entries.js';
import { readOutputFile, writeOutputFile } from '../cache/outputs.js';
import type { Storage } from '../cache/storage.js';
import { findExecutable } from '../client/find-executable.js';
import { Action, type Response } from '../client/protocol.js';
import { parseDepfile } from '../compiler/depfile.js';
import { detectFamily, looksLikeCCompiler, looksLikeNvcc, looksLikeRustc } from '../compiler/detect.js';
import {
  type CacheableCompile,
  type Family,
  languageGroup,
  parseGccArgs,
  sourceLanguage,
} from '../compiler/gcc-args.js';
import { includedFiles } from '../compiler/linemarkers.js';
import { parseNvccArgs } from '../compiler/nvcc-args.js';
import { runCaptured } from '../compiler/run.js';
import type { ClientConfig } from '../config.js';
import type { Logger } from '../log.js';
import type { Stats } from '../stats/stats.js';
import type { RemoteCompiler } from './remote-compile.js';
import { RustCompileService } from './rust-compile.js';

/** Bump when the key recipe or entry layout changes: old entries then simply stop matching. */
const KEY_VERSION = 'kiln-cc-1';

/** Environment variables that change what gcc/clang produce or print. */
const KEY_ENV = [
  'SOURCE_DATE_EPOCH',
  'LANG',
  'LANGUAGE',
  'LC_ALL',
  'LC_MESSAGES',
  'LC_CTYPE',
  'CPATH',
  'C_INCLUDE_PATH',
  'CPLUS_INCLUDE_PATH',
  'OBJC_INCLUDE_PATH',
  'OBJCPLUS_INCLUDE_PATH',
  'GCC_COMPARE_DEBUG',
  'GCC_EXEC_PREFIX',
  'COMPILER_PATH',
  'GCC_COLORS',
  'CCC_OVERRIDE_OPTIONS',
];

/** nvcc adds these to its command line or uses them to pick the host compiler. */
const NVCC_KEY_ENV = ['NVCC_PREPEND_FLAGS', 'NVCC_APPEND_FLAGS', 'NVCC_CCBIN'];

export interface CompileRequest {
  readonly cwd: string;
  /** [compiler as typed, ...args] */
  readonly argv: readonly string[];
  readonly env: Readonly<Record<string, string>>;
  /** Real paths that are kiln itself and must never be taken for the compiler. */
  readonly skip: ReadonlySet<string>;
  readonly stderrTty: boolean;
}

interface CompilerIdentity {
  readonly signature: string;
  readonly digest: string;
  readonly family: Family | undefined;
}

/** A finished compile: `response` alone when there is nothing to store (a crash or a failed compile). */
type CompileRun =
  | { response: Response; stdout?: never; stderr?: never; success?: never }
  | { response?: never; stdout: Buffer; stderr: Buffer; success: Response };

const group = (parsed: CacheableCompile) => languageGroup(parsed.language);

// biome-ignore lint/suspicious/noControlCharactersInRegex: matching terminal escape sequences is the point
const ANSI = /\x1b\[[0-9;]*[mK]/g;

/**
 * Answers one compiler call: a cached result, a fresh compile that gets stored, or "run it
 * yourself" for calls kiln does not cache. Every internal failure turns into a local run.
 */
export class CompileService {
  private readonly identities = new Map<string, CompilerIdentity>();
  private readonly entries: CacheEntries;
  private readonly rust: RustCompileService;

  constructor(
    private readonly config: ClientConfig,
    storage: Storage,
    private readonly stats: Stats,
    private readonly digests: FileDigestCache,
    private readonly log: Logger,
    /** Set when a `[dist]` scheduler is configured: cacheable misses may compile on the cluster. */
    private readonly remote?: RemoteCompiler,
  ) {
    this.entries = new CacheEntries(storage, stats, log);
    this.rust = new RustCompileService(this.entries, stats, digests, log);
  }

  async handle(req: CompileRequest): Promise<Response> {
    this.stats.count('requests');
    const [name = '', ...args] = req.argv;
    const program = findExecutable(name, req.env.PATH, req.cwd, req.skip);
    if (!program) return this.uncached('compiler not found', { action: Action.FALLBACK });
    const runAsIs = (reason: string) =>
      this.uncached(reason, { action: Action.EXEC, program, argv: [program, ...args] });
    try {
      if (looksLikeRustc(name, program)) {
        return (await this.rust.handle(program, args, req)) ?? runAsIs('unsupported compiler');
      }
      if (looksLikeNvcc(name, program)) return await this.handleNvcc(program, name, args, req, runAsIs);
      if (!looksLikeCCompiler(name, program)) return runAsIs('unsupported compiler');
      const identity = await this.identify(program, name, req);
      if (!identity.family) return runAsIs('unsupported compiler');
      const parsed = parseGccArgs(identity.family, args, req.cwd);
      if (!parsed.cacheable) {
        const lang = sourceLanguage(args);
        if (lang) this.stats.language(languageGroup(lang), 'uncached');
        return runAsIs(parsed.reason);
      }
      if (req.env.DEPENDENCIES_OUTPUT || req.env.SUNPRO_DEPENDENCIES)
        return runAsIs('dependency output via environment');
      return await this.compileCached(program, args, identity, parsed, req);
    } catch (err) {
      this.log.error(`internal error on ${req.argv.join(' ')}: ${(err as Error).stack}`);
      this.stats.error('internal');
      return { action: Action.EXEC, program, argv: [program, ...args] };
    }
  }

  /**
   * nvcc: its own identity plus the host compiler's (`-ccbin`, NVCC_CCBIN or gcc), then the C/C++
   * path with depend mode as the only way to learn headers.
   */
  private async handleNvcc(
    program: string,
    name: string,
    args: readonly string[],
    req: CompileRequest,
    runAsIs: (reason: string) => Response,
  ): Promise<Response> {
    const parsed = parseNvccArgs(args);
    if (!parsed.cacheable) {
      this.stats.language('CUDA', 'uncached');
      return runAsIs(parsed.reason);
    }
    let hostName = parsed.hostCompiler ?? req.env.NVCC_CCBIN ?? 'gcc';
    if (fs.statSync(path.resolve(req.cwd, hostName), { throwIfNoEntry: false })?.isDirectory()) {
      hostName = path.join(hostName, 'gcc');
    }
    const host = findExecutable(hostName, req.env.PATH, req.cwd, req.skip);
    if (!host) return runAsIs('nvcc host compiler not found');
    const nvcc = await this.identify(program, name, req);
    const hostId = await this.identify(host, hostName, req);
    const identity: CompilerIdentity = {
      signature: '',
      digest: new KeyHasher().add('nvcc', nvcc.digest).add('host', hostId.digest).digest(),
      family: undefined,
    };
    return await this.compileCached(program, args, identity, parsed, req);
  }

  private uncached(reason: string, response: Response): Response {
    this.stats.nonCacheable(reason);
    this.log.debug(`not cached: ${reason}`);
    return response;
  }

  private async identify(program: string, name: string, req: CompileRequest): Promise<CompilerIdentity> {
    const signature = statSignature(program);
    const known = this.identities.get(program);
    if (known?.signature === signature) return known;
    const version = await runCaptured(program, program, ['--version'], req.cwd, req.env);
    const banner = version.stdout.toString();
    const identity: CompilerIdentity = {
      signature,
      digest: new KeyHasher().add('binary', fs.readFileSync(program)).add('version', banner).digest(),
      family: version.exitCode === 0 ? detectFamily(name, program, banner) : undefined,
    };
    this.identities.set(program, identity);
    return identity;
  }

  /** The key parts shared by direct and preprocessor mode. */
  private commonKey(identity: CompilerIdentity, parsed: CacheableCompile, req: CompileRequest): KeyHasher {
    const h = new KeyHasher()
      .add('version', KEY_VERSION)
      .add('compiler', identity.digest)
      .add('family', parsed.family)
      .add('language', parsed.language)
      .addList('args', parsed.keyArgs);
    for (const name of KEY_ENV) h.add(`env:${name}`, req.env[name]);
    if (parsed.family === 'nvcc') for (const name of NVCC_KEY_ENV) h.add(`env:${name}`, req.env[name]);
    if (parsed.keyCwd) h.add('cwd', req.cwd);
    if (parsed.keyHostCpu) h.add('cpu', `${process.arch} ${os.cpus()[0]?.model ?? 'unknown'}`);
    for (const file of parsed.keyFiles) h.add(`file:${file}`, this.digests.get(file)?.digest);
    for (const file of (req.env.KILN_EXTRAFILES ?? '').split(':').filter(Boolean)) {
      h.add(`extra:${file}`, this.digests.get(path.resolve(req.cwd, file))?.digest ?? 'missing');
    }
    return h;
  }

  private async compileCached(
    program: string,
    args: readonly string[],
    identity: CompilerIdentity,
    parsed: CacheableCompile,
    req: CompileRequest,
  ): Promise<Response> {
    const startedMs = Date.now();
    // What the user typed, response files unexpanded: they may exist because the expansion is too long.
    const asTyped: Response = { action: Action.EXEC, program, argv: [program, ...args] };
    const source = this.digests.get(path.resolve(req.cwd, parsed.input));
    if (!source) return this.uncached('unreadable source file', asTyped);
    const common = () => this.commonKey(identity, parsed, req);
    const directKey =
      this.config.directMode && parsed.needsPreprocessor
        ? common().add('mode', 'direct').add('input', parsed.input).add('source', source.digest).digest()
        : undefined;

    // A miss on the cluster needs the preprocessed source, so depend mode (a local compile) is off.
    const distributable = this.remote !== undefined && parsed.remote.ok;
    let manifestKnown = false;
    if (directKey) {
      const lookup = this.lookupManifest(directKey, req.cwd);
      manifestKnown = lookup.known;
      const response = lookup.result && this.replay(lookup.result, parsed, req);
      if (response) {
        this.stats.count('hitsDirect');
        this.stats.language(group(parsed), 'hits');
        return response;
      }
      // Never compiled with these arguments and this source: nothing for the preprocessor to find
      // either, so skip it and learn the headers from a depfile (ccache's "depend mode").
      const depend = parsed.dependModeOnly || (!manifestKnown && this.config.dependMode);
      if (depend && parsed.depListing !== 'partial' && !distributable) {
        const response = await this.compileDependMode(
          program,
          args,
          directKey,
          parsed,
          req,
          asTyped,
          startedMs,
        );
        if (response) return response;
      }
    }

    if (parsed.dependModeOnly) {
      // No preprocessor mode to fall back on: compile, store nothing.
      const run = await this.compile(program, args, [], parsed, req);
      return run.response ?? run.success;
    }

    let resultKey: string;
    let headers: string[] = [];
    let preprocessed: Buffer | undefined;
    if (parsed.needsPreprocessor) {
      // The remote variant also writes the user's depfile: the worker never sees the headers.
      const cppArgs =
        distributable && parsed.remote.ok ? parsed.remote.preprocessArgs : parsed.preprocessArgs;
      const cpp = await runCaptured(program, program, cppArgs, req.cwd, req.env);
      if (cpp.exitCode !== 0 || cpp.failure) {
        return this.uncached('preprocessor error', asTyped);
      }
      preprocessed = cpp.stdout;
      const mode = distributable && parsed.remote.ok ? `cpp-${parsed.remote.style}` : 'cpp';
      resultKey = common().add('mode', mode).add('preprocessed', cpp.stdout).digest();
      headers = includedFiles(cpp.stdout);
    } else {
      resultKey = common()
        .add('mode', 'preprocessed-input')
        .add('input', parsed.input)
        .add('source', source.digest)
        .digest();
    }

    this.log.debug(`${parsed.input}: direct key ${directKey ?? '-'}, result key ${resultKey}`);
    const cached = this.entries.readResult(resultKey);
    this.log.debug(`result ${resultKey}: ${cached ? 'found' : 'absent'}`);
    if (cached) {
      const response = this.replay(cached, parsed, req);
      if (response) {
        this.stats.count('hitsPreprocessed');
        this.stats.language(group(parsed), 'hits');
        if (directKey) this.recordManifest(directKey, resultKey, headers, req, startedMs);
        return response;
      }
    }

    const run =
      (distributable && preprocessed && (await this.compileRemote(program, parsed, preprocessed, req))) ||
      (await this.compile(program, args, [], parsed, req));
    if (run.response) return run.response;
    this.store(resultKey, run.stdout, run.stderr, parsed, req.cwd);
    if (directKey) this.recordManifest(directKey, resultKey, headers, req, startedMs);
    return run.success;
  }

  /**
   * Runs the real compile (colors forced on unless the user chose, `extra` appended). `response`
   * is set when there is nothing to store: a crash (the client reruns it) or a failed compile.
   */
  private async compile(
    program: string,
    args: readonly string[],
    extra: readonly string[],
    parsed: CacheableCompile,
    req: CompileRequest,
  ): Promise<CompileRun> {
    const forceColor = parsed.color === 'auto' ? ['-fdiagnostics-color=always'] : [];
    const run = await runCaptured(program, program, [...args, ...extra, ...forceColor], req.cwd, req.env);
    if (run.failure) {
      // A crash or a missing program: let the client run it, so the user sees exactly that.
      this.stats.error('compiler crashed');
      return { response: { action: Action.EXEC, program, argv: [program, ...args] } };
    }
    const stderr = this.stderrFor(run.stderr, parsed, req);
    if (run.exitCode !== 0) {
      this.stats.count('compileFailed');
      this.stats.language(group(parsed), 'failed');
      return { response: { action: Action.RESULT, exitCode: run.exitCode, stdout: run.stdout, stderr } };
    }
    this.stats.count('misses');
    this.stats.language(group(parsed), 'misses');
    return {
      stdout: run.stdout,
      stderr: run.stderr,
      success: { action: Action.RESULT, exitCode: 0, stdout: run.stdout, stderr },
    };
  }

  /** A compile on the cluster; undefined when it did not work out and the caller must compile locally. */
  private async compileRemote(
    program: string,
    parsed: CacheableCompile,
    preprocessed: Buffer,
    req: CompileRequest,
  ): Promise<CompileRun | undefined> {
    const outcome = await this.remote!.compile(program, parsed, preprocessed, req.cwd, req.env);
    if (!outcome) return undefined;
    try {
      writeOutputFile(req.cwd, parsed.output, outcome.object);
    } catch (err) {
      this.stats.error('output write');
      this.log.info(`cannot write ${parsed.output}: ${(err as Error).message}`);
      return undefined;
    }
    this.stats.count('misses');
    this.stats.language(group(parsed), 'misses');
    const stderr = Buffer.alloc(0);
    return {
      stdout: outcome.stdout,
      stderr,
      success: { action: Action.RESULT, exitCode: 0, stdout: outcome.stdout, stderr },
    };
  }

  /**
   * A cold miss without a preprocessor run: the compile writes a depfile (the user's own when -MD
   * lists every header, else one of kiln's), and the result is keyed on the direct key plus the
   * digest of every file it names. Nothing is stored when a header changed during the compile or
   * expands __DATE__/__TIME__: the next call will go through preprocessor mode.
   */
  private async compileDependMode(
    program: string,
    args: readonly string[],
    directKey: string,
    parsed: CacheableCompile,
    req: CompileRequest,
    asTyped: Response,
    startedMs: number,
  ): Promise<Response | undefined> {
    let ownDepFile: string | undefined;
    if (parsed.depListing === 'none') {
      ownDepFile = path.join(os.tmpdir(), `kiln-deps-${process.pid}-${randomBytes(6).toString('hex')}.d`);
      try {
        fs.writeFileSync(ownDepFile, '', { flag: 'wx', mode: 0o600 });
      } catch {
        return undefined; // nowhere to put it: preprocessor mode instead
      }
    }
    try {
      const extra = ownDepFile ? ['-MD', '-MF', ownDepFile] : [];
      const run = await this.compile(program, args, extra, parsed, req);
      if (run.response) {
        // A failure that names kiln's own depfile is kiln's doing: the client runs the call as typed.
        const stderr = run.response.action === Action.RESULT ? run.response.stderr : undefined;
        if (ownDepFile && stderr?.includes(ownDepFile)) {
          this.stats.error('depfile');
          return asTyped;
        }
        return run.response;
      }
      const depText = readOutputFile(req.cwd, ownDepFile ?? parsed.depFile!)?.toString();
      const headers = depText === undefined ? undefined : parseDepfile(depText);
      const files = headers && this.trustedDigests(headers, req, startedMs);
      if (files) {
        const h = new KeyHasher().add('version', KEY_VERSION).add('mode', 'depend').add('direct', directKey);
        for (const [file, digest] of files) h.add(file, digest);
        const resultKey = h.digest();
        this.store(resultKey, run.stdout, run.stderr, parsed, req.cwd);
        this.entries.addManifestEntry(directKey, { files, result: resultKey });
      } else {
        // An empty manifest: the next call knows this source and takes preprocessor mode.
        this.entries.putManifest(directKey, []);
      }
      return run.success;
    } finally {
      if (ownDepFile) fs.rmSync(ownDepFile, { force: true });
    }
  }

  private stderrFor(stderr: Buffer, parsed: CacheableCompile, req: CompileRequest): Buffer {
    const wantsColor = req.stderrTty && req.env.TERM !== 'dumb';
    if (parsed.color !== 'auto' || wantsColor || !stderr.includes(0x1b)) return stderr;
    return Buffer.from(stderr.toString('latin1').replace(ANSI, ''), 'latin1');
  }

  private outputFiles(parsed: CacheableCompile): [string, string][] {
    const files: [string, string][] = [['object', parsed.output]];
    if (parsed.depFile) files.push(['dep', parsed.depFile]);
    for (const extra of parsed.extraOutputs) files.push([extra.kind, extra.path]);
    return files;
  }

  private store(key: string, stdout: Buffer, stderr: Buffer, parsed: CacheableCompile, cwd: string): void {
    const files: [string, Buffer][] = [];
    for (const [kind, file] of this.outputFiles(parsed)) {
      const data = readOutputFile(cwd, file);
      if (data) files.push([kind, data]);
      else if (kind === 'object' || kind === 'dep') {
        this.stats.error('missing output');
        this.log.warn(`not storing: ${kind} ${file} was not produced`);
        return;
      }
    }
    this.entries.putResult(key, stdout, stderr, files);
  }

  /** Writes a cached result's files; undefined when they cannot be written (the caller compiles). */
  private replay(result: CachedResult, parsed: CacheableCompile, req: CompileRequest): Response | undefined {
    const wanted = this.outputFiles(parsed);
    if (!result.files.has('object') || (parsed.depFile && !result.files.has('dep'))) return undefined;
    try {
      for (const [kind, file] of wanted) {
        const data = result.files.get(kind);
        if (data) writeOutputFile(req.cwd, file, data);
      }
    } catch (err) {
      this.stats.error('output write');
      this.log.info(`cannot write outputs: ${(err as Error).message}`);
      return undefined;
    }
    return {
      action: Action.RESULT,
      exitCode: 0,
      stdout: result.stdout,
      stderr: this.stderrFor(result.stderr, parsed, req),
    };
  }

  /** The result a manifest names for the headers as they are now; `known` says whether a manifest exists. */
  private lookupManifest(directKey: string, cwd: string): { known: boolean; result?: CachedResult } {
    const manifest = this.entries.readManifest(directKey);
    this.log.debug(`manifest ${directKey}: ${manifest ? `${manifest.length} entries` : 'absent'}`);
    if (!manifest) return { known: false };
    for (const entry of manifest) {
      const matches = entry.files.every(
        ([file, digest]) => this.digests.get(path.resolve(cwd, file))?.digest === digest,
      );
      if (!matches) {
        this.log.debug(`manifest ${directKey}: entry for ${entry.result} does not match`);
        continue;
      }
      const result = this.entries.readResult(entry.result);
      if (result) return { known: true, result };
    }
    return { known: true };
  }

  /**
   * Remembers which headers led to `resultKey`, unless their content makes direct mode unsafe:
   * a header changed while compiling (or just before), or one that expands __DATE__/__TIME__.
   */
  private recordManifest(
    directKey: string,
    resultKey: string,
    headers: readonly string[],
    req: CompileRequest,
    startedMs: number,
  ): void {
    const files = this.trustedDigests(headers, req, startedMs);
    if (files) this.entries.addManifestEntry(directKey, { files, result: resultKey });
  }

  /**
   * The digest of every header, or undefined when one of them makes direct mode unsafe: it cannot
   * be read, it changed while compiling (or just before), it expands __DATE__/__TIME__, or a
   * precompiled .gch sits beside it.
   */
  private trustedDigests(
    headers: readonly string[],
    req: CompileRequest,
    startedMs: number,
  ): [string, string][] | undefined {
    const cwd = req.cwd;
    const files: [string, string][] = [];
    for (const file of headers) {
      const abs = path.resolve(cwd, file);
      const d = this.digests.get(abs);
      if (!d) {
        this.log.debug(`direct mode off: cannot read ${file}`);
        return undefined;
      }
      if (d.timeMacros && req.env.SOURCE_DATE_EPOCH === undefined) {
        this.log.debug(`direct mode off: ${file} uses __DATE__/__TIME__`);
        return undefined;
      }
      if (d.changedMs >= startedMs - TOO_NEW_MARGIN_MS) {
        this.log.debug(`direct mode off: ${file} is too new (${d.changedMs} vs ${startedMs})`);
        return undefined;
      }
      if (fs.existsSync(`${abs}.gch`)) return undefined;
      files.push([file, d.digest]);
    }
    return files;
  }
}
