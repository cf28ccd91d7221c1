import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  ASM_INCLUDE,
  changedMsOf,
  dirStampOf,
  type FileDigest,
  type FileDigestCache,
  KeyHasher,
  statSignature,
  TOO_NEW_MARGIN_MS,
} from '../cache/digest.js';
import { type CachedResult, CacheEntries } from '../cache/entries.js';
import { readOutputFile, type WriteStyle, writeOutputFile } from '../cache/outputs.js';
import type { Storage } from '../cache/storage.js';
import { findExecutable, realpathOrUndefined } from '../client/find-executable.js';
import { Action, type Response } from '../client/protocol.js';
import { BaseDir, markerNames, pinOf } from '../compiler/base-dir.js';
import { parseDepfile } from '../compiler/depfile.js';
import { detectFamily, looksLikeCCompiler, looksLikeNvcc, looksLikeRustc } from '../compiler/detect.js';
import { DriverTools } from '../compiler/driver-tools.js';
import {
  type CacheableCompile,
  type Family,
  languageGroup,
  parseGccArgs,
  sourceLanguage,
} from '../compiler/gcc-args.js';
import { includedFiles, readLineMarkers } from '../compiler/linemarkers.js';
import { parseNvccArgs } from '../compiler/nvcc-args.js';
import { runCaptured } from '../compiler/run.js';
import { type ClientConfig, noDist } from '../config.js';
import type { Logger } from '../log.js';
import type { Stats } from '../stats/stats.js';
import { C_OUTPUT_NAME, cRemotePlan } from './c-remote-plan.js';
import type { CompileRequest } from './compile-request.js';
import {
  type CompileRun,
  countMiss,
  type FamilyCompile,
  getCachedOrCompile,
  type Lookup,
} from './lifecycle.js';
import type { RemoteCompiler, RemoteOutcome } from './remote-compile.js';
import { RustCompileService } from './rust-compile.js';
import { scratchFile } from './scratch.js';

/** Bump when the key recipe or entry layout changes: old entries then simply stop matching. */
const KEY_VERSION = 'kiln-cc-2';

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
  'GCC_URLS',
  'TERM_URLS',
  'GCC_EXTRA_DIAGNOSTIC_OUTPUT',
  // gcc fits quoted source lines to COLUMNS.
  'COLUMNS',
  'CCC_OVERRIDE_OPTIONS',
];

/** Environment variables that make clang write logs or extra files kiln does not reproduce. */
const LOGGING_ENV = [
  'CC_PRINT_HEADERS',
  'CC_PRINT_HEADERS_FILE',
  'CC_PRINT_OPTIONS',
  'CC_PRINT_OPTIONS_FILE',
  'CC_LOG_DIAGNOSTICS',
  'CC_LOG_DIAGNOSTICS_FILE',
  'CC_PRINT_PROC_STAT',
  'CC_PRINT_INTERNAL_STAT',
];

/** nvcc adds these to its command line or uses them to pick the host compiler. */
const NVCC_KEY_ENV = ['NVCC_PREPEND_FLAGS', 'NVCC_APPEND_FLAGS', 'NVCC_CCBIN'];

export type { CompileRequest } from './compile-request.js';

interface CompilerIdentity {
  readonly signature: string;
  readonly digest: string;
  readonly family: Family | undefined;
  /** A script or other non-ELF program: what it runs can change while the file stays the same. */
  readonly wrapper: boolean;
}

const group = (parsed: CacheableCompile) => languageGroup(parsed.language);

/** An assembler `.incbin`/`.include` in preprocessed text (the regex only runs when a word is there). */
const hasAsmInclude = (text: Buffer) =>
  (text.includes('.incbin') || text.includes('.include')) && ASM_INCLUDE.test(text.toString('latin1'));

/** A path as the kernel resolves it from `cwd`: `inc/../x.h` through a symlinked `inc` is not `x.h`. */
const atCwd = (cwd: string, file: string) => (file.startsWith('/') ? file : `${cwd}/${file}`);

/**
 * The working directory the compiler records: $PWD when it names the same directory as the
 * physical cwd (gcc's getpwd, LLVM's current_path), else the physical one.
 */
function logicalCwd(req: CompileRequest): string {
  const pwd = req.env.PWD;
  if (!pwd?.startsWith('/') || pwd === req.cwd) return req.cwd;
  try {
    const a = fs.statSync(pwd, { bigint: true });
    const b = fs.statSync(req.cwd, { bigint: true });
    return a.dev === b.dev && a.ino === b.ino ? pwd : req.cwd;
  } catch {
    return req.cwd;
  }
}

/** The first word of a file, to tell ELF binaries from scripts. */
function isElf(file: string): boolean {
  try {
    const fd = fs.openSync(file, 'r');
    try {
      const head = Buffer.alloc(4);
      fs.readSync(fd, head, 0, 4, 0);
      return head.equals(Buffer.from([0x7f, 0x45, 0x4c, 0x46]));
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return false;
  }
}

/** The pin an entry stored from this call carries when base_dir applies (see `store`). */
const pinFor = (reloc: BaseDir | undefined, req: CompileRequest) => reloc && pinOf(reloc.cwd, req.argv);

/** A compile's headers with what the preprocessor said about them. */
interface Headers {
  readonly files: readonly string[];
  /** System headers (their `__has_include` checks concern the compiler's installation). */
  readonly system: ReadonlySet<string>;
}

/**
 * Answers one compiler call: a cached result, a fresh compile that gets stored, or "run it
 * yourself" for calls kiln does not cache. Every internal failure turns into a local run.
 */
export class CompileService {
  private readonly identities = new Map<string, CompilerIdentity>();
  private readonly entries: CacheEntries;
  private readonly rust: RustCompileService;
  private readonly tools: DriverTools;

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
    this.rust = new RustCompileService(this.entries, stats, digests, log, remote);
    this.tools = new DriverTools(digests);
  }

  /**
   * One compiler call. A cluster notice (cluster-notices.ts) is added to the answer's stderr only
   * for a client whose stderr is a terminal, after the compile and its storing: never through a
   * pipe, never into a cache entry, never changing the exit status.
   */
  async handle(req: CompileRequest): Promise<Response> {
    const res = await this.handleCall(req);
    if (!req.stderrTty || res.action !== Action.RESULT || !this.remote) return res;
    const notice = this.remote.notices.take();
    return notice ? { ...res, stderr: Buffer.concat([res.stderr, Buffer.from(notice)]) } : res;
  }

  private async handleCall(req: CompileRequest): Promise<Response> {
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
      const c = await this.prepareC(program, name, args, req);
      if ('reason' in c) {
        if (c.language) this.stats.language(c.language, 'uncached');
        return runAsIs(c.reason);
      }
      return await this.compileCached(program, args, c.identity, c.tools, c.parsed, req);
    } catch (err) {
      this.log.error(`internal error on ${req.argv.join(' ')}: ${(err as Error).stack}`);
      this.stats.error('internal');
      return { action: Action.EXEC, program, argv: [program, ...args] };
    }
  }

  /**
   * A gcc/clang call made ready for a lookup: the compiler's identity, the programs its driver runs
   * and the parsed arguments; or why it is not cached (and its language, counted as uncached).
   */
  private async prepareC(
    program: string,
    name: string,
    args: readonly string[],
    req: CompileRequest,
  ): Promise<
    | { readonly reason: string; readonly language?: string }
    | { readonly identity: CompilerIdentity; readonly tools: string; readonly parsed: CacheableCompile }
  > {
    if (!looksLikeCCompiler(name, program)) return { reason: 'unsupported compiler' };
    const identity = await this.identify(program, name, req);
    if (!identity.family) return { reason: 'unsupported compiler' };
    const parsed = parseGccArgs(identity.family, args, req.cwd);
    if (!parsed.cacheable) {
      const lang = sourceLanguage(args);
      return { reason: parsed.reason, ...(lang && { language: languageGroup(lang) }) };
    }
    if (req.env.DEPENDENCIES_OUTPUT || req.env.SUNPRO_DEPENDENCIES)
      return { reason: 'dependency output via environment' };
    if (LOGGING_ENV.some((v) => req.env[v] !== undefined)) return { reason: 'compiler logging environment' };
    const tools = await this.tools.digest(
      program,
      identity.wrapper ? undefined : identity.signature,
      parsed.language,
      parsed.args,
      parsed.toolDirs,
      req.cwd,
      req.env,
    );
    if (!tools) return { reason: 'compiler programs not found' };
    return { identity, tools, parsed };
  }

  /**
   * A direct-mode hit of a gcc/clang call, replayed and counted; undefined for anything else
   * (a miss, a call not cached, rustc, nvcc, a hit that must not be replayed here), which the
   * caller hands to handle() unchanged and uncounted. The daemon's hit workers answer with this
   * (hit-worker.ts): the same lookup handle() makes first, through the same code.
   */
  async directHit(req: CompileRequest): Promise<Response | undefined> {
    if (!this.config.directMode) return undefined;
    const [name = '', ...args] = req.argv;
    const program = findExecutable(name, req.env.PATH, req.cwd, req.skip);
    if (!program || looksLikeRustc(name, program) || looksLikeNvcc(name, program)) return undefined;
    try {
      const c = await this.prepareC(program, name, args, req);
      if ('reason' in c) return undefined;
      // Why base_dir does not apply is counted with the call: here only when it is answered.
      const baseDirReasons: string[] = [];
      const keys = this.lookupKeys(program, c.identity, c.tools, c.parsed, req, Date.now(), (reason) =>
        baseDirReasons.push(reason),
      );
      if ('refusal' in keys || !keys.directKey) return undefined;
      const found = await this.lookupManifest(keys.directKey, req.cwd, keys.dirs);
      if (!found.result || this.terminalDiagnostics(found.result.stderr, req)) return undefined;
      const response = this.replay(found.result, c.parsed, req, keys.reloc, keys.pin, false);
      if (!response) return undefined;
      for (const reason of baseDirReasons) this.stats.baseDir(reason);
      this.stats.count('requests');
      this.stats.count('hitsDirect');
      this.stats.language(group(c.parsed), 'hits');
      return response;
    } catch (err) {
      this.log.debug(`hit lookup of ${req.argv.join(' ')} failed, handing it on: ${(err as Error).message}`);
      return undefined;
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
      wrapper: nvcc.wrapper || hostId.wrapper,
    };
    return await this.compileCached(program, args, identity, '', parsed, req);
  }

  private uncached(reason: string, response: Response): Response {
    this.stats.nonCacheable(reason);
    this.log.debug(`not cached: ${reason}`);
    return response;
  }

  /**
   * The compiler's digest and family. An ELF binary is remembered by its stat signature; a script
   * (a wrapper that execs gcc or clang) is asked again on every call, since what it runs can change.
   */
  private async identify(program: string, name: string, req: CompileRequest): Promise<CompilerIdentity> {
    const signature = statSignature(program);
    const known = this.identities.get(program);
    if (known?.signature === signature && !known.wrapper) return known;
    const version = await runCaptured(program, program, ['--version'], req.cwd, req.env);
    const banner = version.stdout.toString();
    const identity: CompilerIdentity = {
      signature,
      digest: new KeyHasher().add('binary', fs.readFileSync(program)).add('version', banner).digest(),
      family: version.exitCode === 0 ? detectFamily(name, program, banner) : undefined,
      wrapper: !isElf(program),
    };
    this.identities.set(program, identity);
    return identity;
  }

  /** The key parts shared by every mode; a string that says why not when something cannot be keyed. */
  private commonKey(
    program: string,
    identity: CompilerIdentity,
    tools: string,
    parsed: CacheableCompile,
    req: CompileRequest,
    cwd: string,
    reloc: BaseDir | undefined,
  ): string {
    const h = new KeyHasher()
      .add('version', KEY_VERSION)
      .add('compiler', identity.digest)
      .add('tools', tools)
      // clang picks its driver mode (C or C++) and target from the name it was run as.
      .add('driver', path.basename(program))
      .add('family', parsed.family)
      .add('language', parsed.language)
      .addList('args', reloc ? reloc.args(parsed.keyArgs) : parsed.keyArgs);
    // Relocated keys (base_dir) never meet plain ones.
    if (reloc) h.add('base_dir', 'relocated');
    for (const name of KEY_ENV) h.add(`env:${name}`, req.env[name]);
    if (parsed.family === 'nvcc') for (const name of NVCC_KEY_ENV) h.add(`env:${name}`, req.env[name]);
    // Under base_dir the debug info's directory as the prefix maps leave it (unmapped: the cwd itself).
    if (parsed.keyCwd) h.add('cwd', reloc ? reloc.debugNames([]).cwd : cwd);
    if (parsed.keyHostCpu) h.add('cpu', `${process.arch} ${os.cpus()[0]?.model ?? 'unknown'}`);
    for (const file of parsed.keyFiles) h.add(`file:${file}`, this.digests.get(file)?.digest);
    // Where each directory really is, relative to where it is named: retargeting a symlink
    // changes it, copying a checkout elsewhere does not.
    for (const dir of parsed.includeDirs) {
      const named = path.resolve(req.cwd, dir);
      const real = realpathOrUndefined(atCwd(req.cwd, dir));
      h.add(
        `dir:${reloc ? reloc.path(dir) : dir}`,
        real === undefined ? 'missing' : path.relative(named, real),
      );
    }
    for (const file of (req.env.KILN_EXTRAFILES ?? '').split(':').filter(Boolean)) {
      h.add(`extra:${file}`, this.digests.get(path.resolve(req.cwd, file))?.digest ?? 'missing');
    }
    if (!parsed.needsPreprocessor && parsed.family === 'gcc' && !parsed.language.startsWith('assembler')) {
      // gcc's diagnostics on preprocessed input quote the original files its line markers name
      // (clang quotes the input itself).
      const text = readOutputFile(req.cwd, parsed.input);
      for (const file of text ? includedFiles(text) : []) {
        h.add(`marker:${file}`, this.digests.get(atCwd(req.cwd, file))?.digest ?? 'missing');
      }
    }
    return h.digest();
  }

  /**
   * A stamp (inode, mtime, ctime) of each include directory on the command line and in CPATH and
   * friends: a new header in an earlier directory would shadow the one a manifest names. Undefined
   * when one changed within the timestamp margin (a file added in the same tick could go unseen).
   * Left out: the working directory and the source's and the object's directories (`-I.` in every
   * automake build), where the build writes objects all the time and would end every entry.
   */
  private includeDirStamps(
    parsed: CacheableCompile,
    req: CompileRequest,
    startedMs: number,
  ): [string, string][] | undefined {
    const fromEnv = [
      'CPATH',
      'C_INCLUDE_PATH',
      'CPLUS_INCLUDE_PATH',
      'OBJC_INCLUDE_PATH',
      'OBJCPLUS_INCLUDE_PATH',
    ]
      .flatMap((v) => (req.env[v] ?? '').split(':'))
      .filter(Boolean);
    const dirs = new Set([...parsed.includeDirs, ...fromEnv]);
    if (dirs.size === 0) return [];
    const busy = new Set<string>();
    for (const dir of [
      req.cwd,
      path.dirname(atCwd(req.cwd, parsed.input)),
      path.dirname(atCwd(req.cwd, parsed.output)),
    ]) {
      const st = fs.statSync(dir, { bigint: true, throwIfNoEntry: false });
      if (st) busy.add(`${st.dev}:${st.ino}`);
    }
    const stamps: [string, string][] = [];
    for (const dir of dirs) {
      const st = fs.statSync(atCwd(req.cwd, dir), { bigint: true, throwIfNoEntry: false });
      if (!st) {
        stamps.push([dir, 'missing']);
        continue;
      }
      if (busy.has(`${st.dev}:${st.ino}`)) continue;
      if (changedMsOf(st) >= startedMs - TOO_NEW_MARGIN_MS) return undefined;
      stamps.push([dir, dirStampOf(st)]);
    }
    return stamps;
  }

  /**
   * The base_dir relocation for a gcc/clang call, or undefined (counted with its reason when the
   * call could have shared: base_dir set, the call a C-family source compile).
   */
  private baseDirFor(
    parsed: CacheableCompile,
    cwd: string,
    count: (reason: string) => void,
  ): BaseDir | undefined {
    const base = this.config.baseDir;
    if (!base || parsed.family === 'nvcc' || !parsed.needsPreprocessor) return undefined;
    if (parsed.language.startsWith('assembler')) return undefined;
    const reloc = BaseDir.for(base, cwd, parsed.args);
    if ('reason' in reloc) {
      count(reloc.reason);
      return undefined;
    }
    if (parsed.keyCwd && reloc.debugNamesDirectory()) {
      count('-g without a prefix map for the working directory');
      reloc.counted = true;
    }
    return reloc;
  }

  /**
   * Why a call must not be cached, judged from its source before any lookup: an assembler
   * `.incbin`/`.include`, or a precompiled header gcc would pick up for its first `#include`.
   */
  private refusal(source: FileDigest, parsed: CacheableCompile, req: CompileRequest): string | undefined {
    if (source.flags.asmInclude) return 'assembler .incbin/.include';
    // gcc looks for `<name>.gch` in each directory it searches for the first #include and for
    // -include headers; clang takes `.pch`/`.gch` for -include. Any of them on the path: refused.
    const names = [...parsed.forcedIncludes];
    if (parsed.family === 'gcc' && source.flags.firstInclude) names.push(source.flags.firstInclude);
    if (names.length === 0) return undefined;
    const dirs = ['.', path.dirname(atCwd(req.cwd, parsed.input)), ...parsed.includeDirs];
    for (const name of names) {
      const candidates = name.startsWith('/') ? [name] : dirs.map((dir) => `${atCwd(req.cwd, dir)}/${name}`);
      if (candidates.some((file) => fs.existsSync(`${file}.gch`) || fs.existsSync(`${file}.pch`)))
        return 'precompiled header';
    }
    return undefined;
  }

  /**
   * The keys a lookup starts from: the part every mode shares, and for direct mode the "seen" key
   * (this source with these arguments, anywhere) and the direct key (here) with the include
   * directories' stamps; the base_dir relocation and pin. `refusal` when the source rules caching
   * out. `countBaseDir` counts why base_dir does not apply.
   */
  private lookupKeys(
    program: string,
    identity: CompilerIdentity,
    tools: string,
    parsed: CacheableCompile,
    req: CompileRequest,
    startedMs: number,
    countBaseDir: (reason: string) => void,
  ):
    | { readonly refusal: string }
    | {
        readonly source: FileDigest;
        readonly common: string;
        readonly seenKey: string | undefined;
        readonly directKey: string | undefined;
        readonly dirs: [string, string][] | undefined;
        readonly reloc: BaseDir | undefined;
        readonly pin: Buffer | undefined;
      } {
    const source = this.digests.get(atCwd(req.cwd, parsed.input));
    if (!source) return { refusal: 'unreadable source file' };
    const refusal = this.refusal(source, parsed, req);
    if (refusal) return { refusal };
    const cwd = logicalCwd(req);
    const reloc = this.baseDirFor(parsed, cwd, countBaseDir);
    const pin = pinFor(reloc, req);
    const common = this.commonKey(program, identity, tools, parsed, req, cwd, reloc);
    const useDirect = this.config.directMode && parsed.needsPreprocessor && !source.flags.timestamp;
    // This source with these arguments, wherever it lives: known elsewhere, preprocessor mode can
    // find what another checkout stored, so depend mode is skipped.
    const seenKey = useDirect
      ? new KeyHasher()
          .add('common', common)
          .add('mode', 'seen')
          .add('input', reloc ? reloc.path(parsed.input) : parsed.input)
          .add('source', source.digest)
          .digest()
      : undefined;
    // A manifest names headers by the paths they were found at; in another checkout a header beside
    // the source may shadow the one it names, so each working directory has its own manifests.
    const directKey = seenKey && new KeyHasher().add('seen', seenKey).add('cwd', cwd).digest();
    // Taken before anything runs: a header added while compiling makes the stamp recorded stale.
    const dirs = directKey ? this.includeDirStamps(parsed, req, startedMs) : undefined;
    return { source, common, seenKey, directKey, dirs, reloc, pin };
  }

  private async compileCached(
    program: string,
    args: readonly string[],
    identity: CompilerIdentity,
    tools: string,
    parsed: CacheableCompile,
    req: CompileRequest,
  ): Promise<Response> {
    const startedMs = Date.now();
    // What the user typed, response files unexpanded: they may exist because the expansion is too long.
    const asTyped: Response = { action: Action.EXEC, program, argv: [program, ...args] };
    const keys = this.lookupKeys(program, identity, tools, parsed, req, startedMs, (reason) =>
      this.stats.baseDir(reason),
    );
    if ('refusal' in keys) return this.uncached(keys.refusal, asTyped);
    const { source, common, seenKey, directKey, dirs, reloc, pin } = keys;

    // A miss on the cluster needs the preprocessed source, so depend mode (a local compile) is off.
    // KILN_NO_DIST=1 in the caller's environment keeps one build local (the daemon is shared).
    const distributable = this.remote !== undefined && parsed.remote.ok && !noDist(req.env);
    let resultKey = '';
    let headers: Headers = { files: [], system: new Set() };
    /** Every file the key was made from, with its digest then: an edit during the compile shows as a change. */
    const keyed = new Map<string, string | undefined>([[parsed.input, source.digest]]);
    let preprocessed: Buffer | undefined;
    const record = () =>
      this.recordManifest(directKey!, seenKey!, resultKey, headers, dirs, parsed, req, startedMs);
    const self = this;

    /** Direct mode, then depend mode on a cold miss, then preprocessor mode. */
    async function* lookup(): AsyncGenerator<Lookup> {
      if (directKey) {
        const found = await self.lookupManifest(directKey, req.cwd, dirs);
        if (found.result) yield { result: found.result, counter: 'hitsDirect' };
        // Never compiled with these arguments and this source: nothing for the preprocessor to find
        // either, so skip it and learn the headers from a depfile (ccache's "depend mode"). Not when
        // the object records its command line: kiln's own -MD -MF would show in it.
        // Under base_dir a cold miss runs the preprocessor: its key is the one other directories find.
        const depend =
          parsed.dependModeOnly ||
          (!found.known && self.config.dependMode && !reloc && !(await self.entries.readManifest(seenKey!)));
        const ownDepfileShows = parsed.depListing === 'none' && parsed.recordsCommandLine;
        if (depend && parsed.depListing !== 'partial' && !distributable && !ownDepfileShows) {
          const response = await self.compileDependMode(
            program,
            args,
            common,
            directKey,
            seenKey!,
            dirs,
            parsed,
            req,
            asTyped,
            startedMs,
            reloc,
          );
          if (response) {
            yield { response };
            return;
          }
        }
      }
      if (parsed.dependModeOnly) {
        // No preprocessor mode to fall back on: compile, store nothing.
        const run = await self.compile(program, args, [], parsed, req, asTyped);
        if (!run.response && run.miss !== false) countMiss(self.stats, group(parsed));
        yield { response: run.response ?? run.success };
        return;
      }
      if (parsed.needsPreprocessor) {
        const cpp = await self.preprocess(program, parsed, distributable, req);
        if (!cpp) {
          yield { response: self.uncached('preprocessor error', asTyped) };
          return;
        }
        if (hasAsmInclude(cpp.stdout)) {
          yield { response: self.uncached('assembler .incbin/.include', asTyped) };
          return;
        }
        preprocessed = cpp.stdout;
        headers = cpp.headers;
        const mode = distributable && parsed.remote.ok ? `cpp-${parsed.remote.style}` : 'cpp';
        resultKey = self.preprocessorKey(common, mode, cpp, req.cwd, keyed, parsed, reloc);
      } else {
        resultKey = new KeyHasher()
          .add('common', common)
          .add('mode', 'preprocessed-input')
          .add('input', parsed.input)
          .add('source', source!.digest)
          .digest();
      }
      self.log.debug(`${parsed.input}: direct key ${directKey ?? '-'}, result key ${resultKey}`);
      const cached = await self.entries.readResult(resultKey);
      self.log.debug(`result ${resultKey}: ${cached ? 'found' : 'absent'}`);
      if (cached)
        yield { result: cached, counter: 'hitsPreprocessed', onHit: directKey ? record : undefined };
    }

    const family: FamilyCompile = {
      language: group(parsed),
      lookup,
      refuseReplay: (result) =>
        this.terminalDiagnostics(result.stderr, req)
          ? this.uncached('diagnostics for a terminal', asTyped)
          : undefined,
      replay: (result) => this.replay(result, parsed, req, reloc, pin),
      remote: () =>
        distributable && preprocessed
          ? {
              plan: cRemotePlan(program, parsed, preprocessed, req.cwd, req.env),
              accept: (outcome) => this.acceptRemote(outcome, parsed, req),
            }
          : undefined,
      local: () => this.compile(program, args, [], parsed, req, asTyped),
      store: async (run) => {
        // A file saved while the compiler ran may have been read in its new state: the key is the old one.
        for (const [file, digest] of keyed) {
          if (this.digests.get(atCwd(req.cwd, file))?.digest !== digest) {
            this.log.debug(`not storing ${resultKey}: ${file} changed during the compile`);
            return;
          }
        }
        await this.store(resultKey, run.stdout, run.stderr, parsed, req.cwd, reloc, pin);
        if (directKey) await record();
      },
    };
    return getCachedOrCompile(family, this.stats, this.remote);
  }

  /**
   * The preprocessor-mode key. -E drops what the compile still sees: comments
   * (-Wimplicit-fallthrough, quoted source lines), spacing (column info), macros (-g3) and the
   * bytes clang checksums into -g; so every file the preprocessor read is keyed by content (and
   * noted in `keyed`), and -E's own diagnostics with them.
   */
  private preprocessorKey(
    common: string,
    mode: string,
    cpp: { stdout: Buffer; stderr: Buffer; headers: Headers },
    cwd: string,
    keyed: Map<string, string | undefined>,
    parsed: CacheableCompile,
    reloc: BaseDir | undefined,
  ): string {
    // __builtin_FILE() (std::source_location) takes the path from the line markers: keep them as they are.
    const builtinFile =
      reloc !== undefined &&
      (cpp.stdout.includes('__builtin_FILE') || cpp.stdout.includes('__builtin_source_location'));
    if (builtinFile && !reloc.counted) {
      this.stats.baseDir('__builtin_FILE or std::source_location');
      reloc.counted = true;
    }
    const moved = builtinFile ? undefined : reloc;
    const h = new KeyHasher()
      .add('common', common)
      .add('mode', mode)
      .add('preprocessed', moved ? moved.markers(cpp.stdout) : cpp.stdout)
      .add('cpp-stderr', cpp.stderr);
    for (const file of cpp.headers.files) {
      const digest = this.digests.get(atCwd(cwd, file))?.digest;
      keyed.set(file, digest);
      h.add(`read:${moved ? moved.path(file) : file}`, digest);
    }
    // -g under base_dir: every name the debug info will hold, as the prefix maps leave it.
    if (reloc && parsed.keyCwd) h.addList('debug-names', reloc.debugNames(markerNames(cpp.stdout)).names);
    return h.digest();
  }

  /**
   * The -E run: its output, its diagnostics, and every file it read — the line markers, plus the
   * files only its depfile names (clang's sanitizer and profile lists). Undefined when it failed.
   */
  private async preprocess(
    program: string,
    parsed: CacheableCompile,
    distributable: boolean,
    req: CompileRequest,
  ): Promise<{ stdout: Buffer; stderr: Buffer; headers: Headers } | undefined> {
    if (distributable && parsed.remote.ok) {
      // The remote variant also writes the user's depfile: the worker never sees the headers.
      const cpp = await runCaptured(program, program, parsed.remote.preprocessArgs, req.cwd, req.env);
      if (cpp.exitCode !== 0 || cpp.failure) return undefined;
      return { stdout: cpp.stdout, stderr: cpp.stderr, headers: readLineMarkers(cpp.stdout) };
    }
    const depFile = scratchFile('cpp');
    try {
      const cppArgs = [...parsed.preprocessArgs, '-MD', '-MF', depFile];
      const cpp = await runCaptured(program, program, cppArgs, req.cwd, req.env);
      if (cpp.exitCode !== 0 || cpp.failure) return undefined;
      const markers = readLineMarkers(cpp.stdout);
      const listed = parseDepfile(readOutputFile('/', depFile)?.toString() ?? '') ?? [];
      const files = [...new Set([...markers.files, ...listed])];
      // kiln's depfile name shows up in -E's diagnostics only when something is wrong with it.
      const stderr = Buffer.from(cpp.stderr.toString('latin1').split(depFile).join('<depfile>'), 'latin1');
      return { stdout: cpp.stdout, stderr, headers: { files, system: markers.system } };
    } finally {
      fs.rmSync(depFile, { force: true });
    }
  }

  /**
   * Runs the real compile with `extra` appended. `response` is set when there is nothing to
   * store: a crash (the client reruns it) or a failed compile.
   */
  private async compile(
    program: string,
    args: readonly string[],
    extra: readonly string[],
    parsed: CacheableCompile,
    req: CompileRequest,
    asTyped: Response,
  ): Promise<CompileRun> {
    const run = await runCaptured(program, program, [...args, ...extra], req.cwd, req.env, req.umask);
    if (run.failure) {
      // A crash or a missing program: let the client run it, so the user sees exactly that.
      this.stats.error('compiler crashed');
      return { response: { action: Action.EXEC, program, argv: [program, ...args] } };
    }
    const onTerminal = this.terminalDiagnostics(run.stderr, req);
    if (run.exitCode !== 0) {
      if (onTerminal) return { response: this.uncached('diagnostics for a terminal', asTyped) };
      this.stats.count('compileFailed');
      this.stats.language(group(parsed), 'failed');
      return {
        response: { action: Action.RESULT, exitCode: run.exitCode, stdout: run.stdout, stderr: run.stderr },
      };
    }
    if (onTerminal) {
      // Stored for callers without a terminal; this one reruns it to get the terminal's rendering.
      return {
        stdout: run.stdout,
        stderr: run.stderr,
        success: this.uncached('diagnostics for a terminal', asTyped),
        miss: false,
      };
    }
    return {
      stdout: run.stdout,
      stderr: run.stderr,
      success: { action: Action.RESULT, exitCode: 0, stdout: run.stdout, stderr: run.stderr },
    };
  }

  /**
   * Diagnostics shown on a terminal differ from the ones kiln captures through a pipe (colours,
   * hyperlinks, source lines fitted to the terminal's width), in ways that depend on the compiler,
   * its version and the terminal: such a call is left to the client, which runs it on the terminal.
   */
  private terminalDiagnostics(stderr: Buffer, req: CompileRequest): boolean {
    return stderr.length > 0 && (req.stderrTty || req.stdinTty === true);
  }

  /** Writes the object a worker compiled; undefined when it cannot be written (the caller compiles). */
  private acceptRemote(
    outcome: RemoteOutcome,
    parsed: CacheableCompile,
    req: CompileRequest,
  ): CompileRun | undefined {
    try {
      this.writeOutput(req, parsed, 'object', parsed.output, outcome.outputs.get(C_OUTPUT_NAME)!);
    } catch (err) {
      this.stats.error('output write');
      this.log.info(`cannot write ${parsed.output}: ${(err as Error).message}`);
      return undefined;
    }
    const { stdout, stderr } = outcome;
    return { stdout, stderr, success: { action: Action.RESULT, exitCode: 0, stdout, stderr } };
  }

  /**
   * A cold miss without a preprocessor run: the compile writes a depfile (the user's own when -MD
   * lists every header, else one of kiln's), and the result is keyed on the direct key plus the
   * digest of every file it names. Nothing is stored when a header changed during the compile or
   * makes direct mode unsafe: the next call will go through preprocessor mode.
   */
  private async compileDependMode(
    program: string,
    args: readonly string[],
    common: string,
    directKey: string,
    seenKey: string,
    dirs: readonly (readonly [string, string])[] | undefined,
    parsed: CacheableCompile,
    req: CompileRequest,
    asTyped: Response,
    startedMs: number,
    reloc: BaseDir | undefined,
  ): Promise<Response | undefined> {
    let ownDepFile: string | undefined;
    if (parsed.depListing === 'none') {
      ownDepFile = scratchFile('deps');
      try {
        fs.writeFileSync(ownDepFile, '', { flag: 'wx', mode: 0o600 });
      } catch {
        return undefined; // nowhere to put it: preprocessor mode instead
      }
    }
    try {
      const extra = ownDepFile ? ['-MD', '-MF', ownDepFile] : [];
      const run = await this.compile(program, args, extra, parsed, req, asTyped);
      if (run.response) {
        // A failure that names kiln's own depfile is kiln's doing: the client runs the call as typed.
        const stderr = run.response.action === Action.RESULT ? run.response.stderr : undefined;
        if (ownDepFile && stderr?.includes(ownDepFile)) {
          this.stats.error('depfile');
          return asTyped;
        }
        return run.response;
      }
      if (run.miss !== false) countMiss(this.stats, group(parsed));
      const depText = readOutputFile(req.cwd, ownDepFile ?? parsed.depFile!)?.toString();
      const listed = depText === undefined ? undefined : parseDepfile(depText);
      const trust = listed
        ? this.trust({ files: listed, system: new Set() }, parsed, req, startedMs)
        : undefined;
      const files = trust && 'files' in trust ? trust.files : undefined;
      if (files) {
        const h = new KeyHasher().add('version', KEY_VERSION).add('mode', 'depend').add('direct', directKey);
        for (const [file, digest] of files) h.add(file, digest);
        const resultKey = h.digest();
        await this.store(resultKey, run.stdout, run.stderr, parsed, req.cwd, reloc, pinFor(reloc, req));
        if (dirs) await this.entries.addManifestEntry(directKey, { files, dirs, result: resultKey });
        await this.markSeen(seenKey);
      } else {
        // An empty manifest: the next call knows this source and takes preprocessor mode.
        await this.entries.putManifest(directKey, []);
        if (
          listed &&
          trust &&
          'preprocessorSafe' in trust &&
          trust.preprocessorSafe &&
          !parsed.dependModeOnly
        )
          await this.storeByPreprocessor(program, common, parsed, req, startedMs, listed, run, reloc);
      }
      return run.success;
    } finally {
      if (ownDepFile) fs.rmSync(ownDepFile, { force: true });
    }
  }

  /**
   * After a depend-mode compile whose headers rule out direct mode but not preprocessor mode
   * (`__has_include`, `__TIMESTAMP__`, `#pragma GCC dependency`): runs -E now and stores the result
   * under its preprocessor key, so the next call hits. Only when no file it read changed since the
   * compile started, so -E saw what the compiler saw.
   */
  private async storeByPreprocessor(
    program: string,
    common: string,
    parsed: CacheableCompile,
    req: CompileRequest,
    startedMs: number,
    listed: readonly string[],
    run: { stdout: Buffer; stderr: Buffer },
    reloc: BaseDir | undefined,
  ): Promise<void> {
    const cpp = await this.preprocess(program, parsed, false, req);
    if (!cpp || hasAsmInclude(cpp.stdout)) return;
    const read = new Set([parsed.input, ...listed, ...cpp.headers.files]);
    for (const file of read) {
      const d = this.digests.get(atCwd(req.cwd, file));
      if (d && d.changedMs >= startedMs - TOO_NEW_MARGIN_MS) return;
    }
    const resultKey = this.preprocessorKey(common, 'cpp', cpp, req.cwd, new Map(), parsed, reloc);
    await this.store(resultKey, run.stdout, run.stderr, parsed, req.cwd, reloc, pinFor(reloc, req));
  }

  private outputFiles(parsed: CacheableCompile): [string, string][] {
    const files: [string, string][] = [['object', parsed.output]];
    if (parsed.depFile) files.push(['dep', parsed.depFile]);
    for (const extra of parsed.extraOutputs) files.push([extra.kind, extra.path]);
    return files;
  }

  /**
   * Writes one output as the compiler would have. clang replaces its objects (a temp file and a
   * rename). gcc's assembler (bfd) removes an existing non-empty file or a symlink to one and
   * creates a new file, else opens the path for writing: through a dangling symlink, keeping an
   * empty file's inode and mode. Depfiles are opened for writing by both (fopen "w").
   */
  private writeOutput(
    req: CompileRequest,
    parsed: CacheableCompile,
    kind: string,
    file: string,
    data: Buffer,
  ): void {
    let style: WriteStyle = 'in-place';
    if (kind !== 'dep') {
      const st = fs.statSync(path.resolve(req.cwd, file), { throwIfNoEntry: false });
      // A device or pipe (-o /dev/null) is opened and written by both compilers, never replaced.
      if (st && !st.isFile()) style = 'in-place';
      else if (parsed.family !== 'gcc' || (st?.size ?? 0) > 0) style = 'replace';
    }
    writeOutputFile(req.cwd, file, data, { style, umask: req.umask });
  }

  private async store(
    key: string,
    stdout: Buffer,
    stderr: Buffer,
    parsed: CacheableCompile,
    cwd: string,
    reloc?: BaseDir,
    pin?: Buffer,
  ): Promise<void> {
    const files: [string, Buffer][] = [];
    let namesDir = reloc !== undefined && (reloc.mentions(stdout) || reloc.mentions(stderr));
    for (const [kind, file] of this.outputFiles(parsed)) {
      const data = readOutputFile(cwd, file);
      if (data) {
        if (kind === 'dep' && reloc) {
          // Kept with `\0<ups>\0` for the directory: written back for the directory of each hit.
          const stored = reloc.toStored(data);
          namesDir ||= reloc.mentions(stored);
          files.push(['dep-rel', stored]);
        } else {
          namesDir ||= reloc?.mentions(data) ?? false;
          files.push([kind, data]);
        }
      } else if (kind === 'object' || kind === 'dep') {
        this.stats.error('missing output');
        this.log.warn(`not storing: ${kind} ${file} was not produced`);
        return;
      }
    }
    if (namesDir && pin) {
      // An output holds the directory's path: this entry is for this directory and command only.
      if (!reloc?.counted) this.stats.baseDir('the output names its directory');
      files.push(['pin', pin]);
    }
    await this.entries.putResult(key, stdout, stderr, files);
  }

  /** Writes a cached result's files; undefined when they cannot be written (the caller compiles). */
  private replay(
    result: CachedResult,
    parsed: CacheableCompile,
    req: CompileRequest,
    reloc?: BaseDir,
    pin?: Buffer,
    countFailure = true,
  ): Response | undefined {
    const wanted = this.outputFiles(parsed);
    const pinned = result.files.get('pin');
    if (pinned && !(pin && pinned.equals(pin))) {
      this.log.debug('base_dir: the entry names another directory');
      return undefined;
    }
    const relDep = result.files.get('dep-rel');
    const dep = relDep ? reloc?.fromStored(relDep) : result.files.get('dep');
    if (!result.files.has('object') || (parsed.depFile && !dep)) return undefined;
    try {
      for (const [kind, file] of wanted) {
        const data = kind === 'dep' ? dep : result.files.get(kind);
        if (data) this.writeOutput(req, parsed, kind, file, data);
      }
    } catch (err) {
      // A hit worker hands the call on: the daemon tries again and counts it.
      if (countFailure) this.stats.error('output write');
      this.log.info(`cannot write outputs: ${(err as Error).message}`);
      return undefined;
    }
    return { action: Action.RESULT, exitCode: 0, stdout: result.stdout, stderr: result.stderr };
  }

  /** The result a manifest names for the headers as they are now; `known` says whether a manifest exists. */
  private async lookupManifest(
    directKey: string,
    cwd: string,
    dirs: readonly (readonly [string, string])[] | undefined,
  ): Promise<{ known: boolean; result?: CachedResult }> {
    const manifest = await this.entries.readManifest(directKey);
    this.log.debug(`manifest ${directKey}: ${manifest ? `${manifest.length} entries` : 'absent'}`);
    if (!manifest) return { known: false };
    // Without stamps (a directory changed just now) no entry can be trusted.
    if (!dirs) return { known: true };
    const stamps = new Map(dirs);
    for (const entry of manifest) {
      const matches = entry.files.every(
        ([file, digest]) => this.digests.get(atCwd(cwd, file))?.digest === digest,
      );
      const changed = (entry.dirs ?? [])
        .filter(([dir, stamp]) => stamps.get(dir) !== stamp)
        .map(([dir]) => dir);
      if (!matches || changed.some((dir) => !stamps.has(dir) || this.shadows(dir, entry.files, cwd))) {
        this.log.debug(`manifest ${directKey}: entry for ${entry.result} does not match`);
        continue;
      }
      const result = await this.entries.readResult(entry.result);
      if (!result) continue;
      // The directory changed without shadowing anything: remember its new stamp.
      if (changed.length) await this.entries.addManifestEntry(directKey, { ...entry, dirs });
      return { known: true, result };
    }
    return { known: true };
  }

  /**
   * Whether `dir` now holds a file that an include of one of `files` could find first: any
   * trailing part of a header's path (`x.h`, `sys/x.h`…) present in `dir` as another file.
   * Checked only when the directory's stamp changed; finding one sends the call to preprocessor mode.
   */
  private shadows(dir: string, files: readonly (readonly [string, string])[], cwd: string): boolean {
    const base = atCwd(cwd, dir);
    for (const [file] of files) {
      const header = fs.statSync(atCwd(cwd, file), { bigint: true, throwIfNoEntry: false });
      const parts = file.split('/').filter((p) => p && p !== '.');
      for (let i = parts.length - 1; i >= 0; i--) {
        const st = fs.statSync(`${base}/${parts.slice(i).join('/')}`, {
          bigint: true,
          throwIfNoEntry: false,
        });
        if (st && !(header && st.dev === header.dev && st.ino === header.ino)) return true;
      }
    }
    return false;
  }

  /**
   * Remembers which headers led to `resultKey`, unless their content makes direct mode unsafe, and
   * marks the source as seen (an empty manifest under `seenKey`) for other working directories.
   */
  private async recordManifest(
    directKey: string,
    seenKey: string,
    resultKey: string,
    headers: Headers,
    dirs: readonly (readonly [string, string])[] | undefined,
    parsed: CacheableCompile,
    req: CompileRequest,
    startedMs: number,
  ): Promise<void> {
    const trust = this.trust(headers, parsed, req, startedMs);
    if ('files' in trust && dirs)
      await this.entries.addManifestEntry(directKey, { files: trust.files, dirs, result: resultKey });
    await this.markSeen(seenKey);
  }

  /** An empty manifest under `seenKey`: other working directories go to preprocessor mode for this source. */
  private async markSeen(seenKey: string): Promise<void> {
    if (!(await this.entries.readManifest(seenKey))) await this.entries.putManifest(seenKey, []);
  }

  /**
   * The digest of every header, or why direct mode is unsafe for them: one cannot be read, changed
   * while compiling (or just before), depends on the clock, its mtime or files that need not exist
   * (`__has_include` outside system headers), has an assembler `.incbin`, or has a precompiled
   * .gch beside it. `preprocessorSafe`: the reason concerns direct mode only (a preprocessor key,
   * made from -E's output, still tells the results apart).
   */
  private trust(
    headers: Headers,
    parsed: CacheableCompile,
    req: CompileRequest,
    startedMs: number,
  ): { files: [string, string][] } | { why: string; preprocessorSafe: boolean } {
    const files: [string, string][] = [];
    // Only gcc takes __DATE__ and __TIME__ from SOURCE_DATE_EPOCH (clang from version 16 on).
    const fixedClock = parsed.family === 'gcc' && req.env.SOURCE_DATE_EPOCH !== undefined;
    let directOnly: { why: string; preprocessorSafe: boolean } | undefined;
    for (const file of headers.files) {
      const abs = atCwd(req.cwd, file);
      const d = this.digests.get(abs);
      const unsafe = (why: string, preprocessorSafe: boolean) => {
        this.log.debug(`direct mode off: ${file}: ${why}`);
        return { why, preprocessorSafe };
      };
      if (!d) return unsafe('cannot read it', false);
      if (d.flags.dateTime && !fixedClock) return unsafe('it uses __DATE__/__TIME__', false);
      if (d.changedMs >= startedMs - TOO_NEW_MARGIN_MS)
        return unsafe(`it is too new (${d.changedMs} vs ${startedMs})`, false);
      if (d.flags.asmInclude) return unsafe('it has an assembler .incbin/.include', false);
      if (fs.existsSync(`${abs}.gch`)) return unsafe('a .gch sits beside it', false);
      // Unsafe for direct mode only: keep looking, a later file may rule out preprocessor mode too.
      if (d.flags.timestamp) directOnly ??= unsafe('it uses __TIMESTAMP__', true);
      else if (d.flags.mtimeDependent) directOnly ??= unsafe('it has #pragma GCC dependency', true);
      else if (d.flags.hasInclude && !headers.system.has(file) && !file.startsWith('/usr/'))
        directOnly ??= unsafe('it uses __has_include', true);
      files.push([file, d.digest]);
    }
    return directOnly ?? { files };
  }
}
