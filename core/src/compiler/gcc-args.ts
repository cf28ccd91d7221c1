/**
 * Argument parsing for gcc and clang: decides whether a call is cacheable (and if not, why), and
 * extracts what the cache needs: the source, its language, every output file, the arguments that
 * make up the key and the arguments of the matching `-E` run.
 */
import fs from 'node:fs';
import path from 'node:path';
import { expandResponseFiles } from './response-file.js';

export type Family = 'gcc' | 'clang';

export const Languages = {
  c: { preprocessed: 'cpp-output' },
  'c++': { preprocessed: 'c++-cpp-output' },
  'objective-c': { preprocessed: 'objective-c-cpp-output' },
  'objective-c++': { preprocessed: 'objective-c++-cpp-output' },
  'assembler-with-cpp': { preprocessed: 'assembler' },
  'cpp-output': { preprocessed: undefined },
  'c++-cpp-output': { preprocessed: undefined },
  'objective-c-cpp-output': { preprocessed: undefined },
  'objective-c++-cpp-output': { preprocessed: undefined },
  assembler: { preprocessed: undefined },
  /** CUDA through nvcc (never gcc's: gcc treats .cu as a linker input). */
  cu: { preprocessed: undefined },
} as const;
export type Language = keyof typeof Languages;

const EXTENSIONS: Record<string, Language> = {
  '.c': 'c',
  '.cc': 'c++',
  '.cp': 'c++',
  '.cpp': 'c++',
  '.CPP': 'c++',
  '.cxx': 'c++',
  '.c++': 'c++',
  '.C': 'c++',
  '.m': 'objective-c',
  '.mm': 'objective-c++',
  '.M': 'objective-c++',
  '.S': 'assembler-with-cpp',
  '.sx': 'assembler-with-cpp',
  '.s': 'assembler',
  '.i': 'cpp-output',
  '.ii': 'c++-cpp-output',
  '.mi': 'objective-c-cpp-output',
  '.mii': 'objective-c++-cpp-output',
};

/** The language group that `--show-stats` reports per language. */
export function languageGroup(lang: Language): string {
  if (lang.startsWith('objective-c++')) return 'Objective-C++';
  if (lang.startsWith('objective-c')) return 'Objective-C';
  if (lang.startsWith('c++')) return 'C++';
  if (lang.startsWith('assembler')) return 'Assembler';
  if (lang === 'cu') return 'CUDA';
  return 'C';
}

/** The language of the first argument that names a source file by its extension (for statistics). */
export function sourceLanguage(args: readonly string[]): Language | undefined {
  for (const arg of args) {
    if (arg.startsWith('-')) continue;
    const lang = EXTENSIONS[path.extname(arg)];
    if (lang) return lang;
  }
  return undefined;
}

/**
 * gcc's long spellings of short options (gcc.cc's option_map), normalised before parsing so that
 * `--output=c.o` and `-o c.o` mean one thing. gcc also takes unambiguous abbreviations
 * (`--outp=c.o`): kiln does not guess those, it leaves such calls uncached.
 */
const LONG_OPTIONS: Record<string, string> = {
  '--output': '-o',
  '--debug': '-g',
  '--compile': '-c',
  '--preprocess': '-E',
  '--assemble': '-S',
  '--dependencies': '-M',
  '--user-dependencies': '-MM',
  '--write-dependencies': '-MD',
  '--write-user-dependencies': '-MMD',
  '--print-missing-file-dependencies': '-MG',
  '--include': '-include',
  '--imacros': '-imacros',
  '--include-directory': '-I',
  '--include-directory-after': '-idirafter',
  '--include-prefix': '-iprefix',
  '--include-with-prefix': '-iwithprefix',
  '--include-with-prefix-before': '-iwithprefixbefore',
  '--include-with-prefix-after': '-iwithprefix',
  '--define-macro': '-D',
  '--undefine-macro': '-U',
  '--language': '-x',
  '--optimize': '-O',
  '--no-warnings': '-w',
  '--extra-warnings': '-W',
  '--all-warnings': '-Wall',
  '--pedantic': '-pedantic',
  '--pedantic-errors': '-pedantic-errors',
  '--save-temps': '-save-temps',
  '--trace-includes': '-H',
  '--comments': '-C',
  '--comments-in-macros': '-CC',
  '--no-line-commands': '-P',
  '--no-standard-includes': '-nostdinc',
  '--std': '-std=',
  '--ansi': '-ansi',
  '--traditional-cpp': '-traditional-cpp',
  '--specs': '-specs=',
  '--prefix': '-B',
  '--verbose': '-v',
  '--assert': '-A',
  '--for-assembler': '-Wa,',
  '--for-linker': '-Xlinker',
  '--machine': '-m',
  '--profile': '-p',
  '--dumpbase': '-dumpbase',
  '--dumpdir': '-dumpdir',
};

/** Long options that gcc or clang take as they are and that kiln's parser already understands. */
const LONG_AS_IS =
  /^--(sysroot|param|coverage|target|gcc-toolchain|driver-mode|serialize-diagnostics|rtlib|unwindlib|ld-path|cuda-[a-z-]+|offload-arch|hip-[a-z-]+|no-cuda-version-check)(=|$)/;

/** The short spelling of a long option (same argument slot), undefined when kiln does not know it. */
function normaliseLong(a: string): string | undefined {
  if (LONG_AS_IS.test(a)) return a;
  const eq = a.indexOf('=');
  const short = LONG_OPTIONS[eq < 0 ? a : a.slice(0, eq)];
  if (short === undefined) return undefined;
  // Attached values: every mapped option takes its value joined (`--debug=3` → `-g3`).
  if (eq >= 0) return short === '-dumpbase' || short === '-dumpdir' ? undefined : short + a.slice(eq + 1);
  // `--std c99` joins the next argument into one option: not representable slot for slot.
  if (short.endsWith('=') || short.endsWith(',') || short === '-m') return undefined;
  return short;
}

/** Options whose value is the next argument when not attached. */
const SEPARATE_ARG = new Set([
  '-o',
  '-x',
  '-MF',
  '-MT',
  '-MQ',
  '-I',
  '-isystem',
  '-iquote',
  '-idirafter',
  '-include',
  '-imacros',
  '-iprefix',
  '-iwithprefix',
  '-iwithprefixbefore',
  '-isysroot',
  '-imultilib',
  '-imultiarch',
  '-iframework',
  '-D',
  '-U',
  '-A',
  '-Xpreprocessor',
  '-Xassembler',
  '-Xlinker',
  '-Xclang',
  '-arch',
  '-target',
  '-aux-info',
  '--param',
  '-u',
  '-L',
  '-l',
  '-T',
  '-z',
  '-F',
  '-mllvm',
  '-gcc-toolchain',
  '-Xanalyzer',
  '-ivfsoverlay',
  '--sysroot',
  '-B',
  '-specs',
  '-dumpbase',
  '-dumpdir',
  '-Xarch_host',
  '-Xarch_device',
  '-Xopenmp-target',
  '-include-pch',
  '-working-directory',
  '--serialize-diagnostics',
  '-index-store-path',
]);

/** Preprocessor options with a separate value: meaningless when compiling preprocessed output. */
const PREPROCESSOR_ONLY_SEPARATE = new Set([
  '-D',
  '-U',
  '-I',
  '-include',
  '-imacros',
  '-isystem',
  '-iquote',
  '-idirafter',
  '-iprefix',
  '-iwithprefix',
  '-iwithprefixbefore',
  '-isysroot',
  '-imultilib',
  '-imultiarch',
  '-Xpreprocessor',
  '-A',
]);
const PREPROCESSOR_ONLY = new Set(['-nostdinc', '-nostdinc++', '-undef', '-trigraphs', '-P', '-C', '-CC']);
const PREPROCESSOR_ONLY_PREFIX =
  /^(-[DUIA].|-Wp,|-(isystem|iquote|idirafter|include|imacros|isysroot|iprefix)(.))/;

/** Options whose result a worker cannot reproduce from preprocessed output: the call stays local. */
function LOCAL_ONLY(a: string): string | undefined {
  if (/^-g(gdb|dwarf-?\d*)?3$/.test(a) || a === '-fdebug-macro') return 'macro debug info (-g3)';
  if (a === '-H') return 'header listing (-H)';
  if (a === '-B' || a.startsWith('-B') || a === '--sysroot' || a.startsWith('--sysroot='))
    return 'toolchain paths (-B, --sysroot)';
  if (a === '-fdirectives-only' || a === '-traditional-cpp') return 'special preprocessing';
  // Remote inputs sit at mapped paths that kiln maps back with -fdebug-prefix-map.
  if (/^-f(debug|file|macro)-prefix-map=/.test(a)) return 'prefix maps';
  // Line markers in the remote input are a GNU extension that -pedantic warns about.
  if (/^-(W?pedantic|pedantic-errors)$/.test(a)) return '-pedantic';
  return undefined;
}

/** Prefixes of options that write files kiln does not know how to cache. */
const EXTRA_OUTPUT_PREFIXES = [
  '-save-temps',
  '-fdump-',
  '-fstack-usage',
  '-fcallgraph-info',
  '-aux-info',
  '-ftime-trace',
  '--serialize-diagnostics',
  '-index-store-path',
  '-fopt-info',
  '-fsave-optimization-record',
];

const DEP_FLAGS = new Set(['-MD', '-MMD', '-MP', '-MG']);
const DEP_WITH_ARG = new Set(['-MF', '-MT', '-MQ']);
/** Colour options: in the key (a bad one must fail as it would without kiln), not in the -E run. */
const COLOR_FLAGS = /^-f(no-)?(diagnostics-color(=.*)?|color-diagnostics)$/;

/** Options naming a file that the compile reads though no line marker shows it (clang lists them in its depfile). */
const LIST_FILE_OPTIONS =
  /^(-fsanitize-(ignorelist|blacklist|system-ignorelist|coverage-(allowlist|ignorelist|blocklist|whitelist|blacklist))|-fprofile-list|-fxray-(attr-list|always-instrument|never-instrument)|-fprofile-remapping-file)=(.+)$/;

/** Options naming include (and sysroot) directories, joined or separate. */
const INCLUDE_DIR_OPTION =
  /^(-I|-isystem|-iquote|-idirafter|-iprefix|-isysroot|--sysroot=?|-iframework|-F)(.*)$/;

export interface ExtraOutput {
  readonly kind: 'dwo' | 'gcno';
  readonly path: string;
}

export interface CacheableCompile {
  readonly cacheable: true;
  readonly family: Family | 'nvcc';
  /** The arguments after response-file expansion, in order, as the compiler will see them. */
  readonly args: readonly string[];
  readonly input: string;
  readonly language: Language;
  /** False when the input needs no preprocessor run (.i, .ii, .s): its bytes are the key. */
  readonly needsPreprocessor: boolean;
  /**
   * No `-E` run shows every header (nvcc: device passes), so a miss always compiles in depend
   * mode and headers come from the compiler's depfile; without direct mode nothing is cached.
   */
  readonly dependModeOnly: boolean;
  readonly output: string;
  /** Where the depfile lands, when -MD/-MMD asks for one. */
  readonly depFile: string | undefined;
  /**
   * What the user's dependency options list: none, every header (-MD), or only non-system
   * headers or possibly missing ones (-MMD, -MG), which kiln cannot learn a complete header list from.
   */
  readonly depListing: 'none' | 'all' | 'partial';
  readonly extraOutputs: readonly ExtraOutput[];
  /** Arguments for the preprocessor-only run (outputs and dependency options removed, -E added). */
  readonly preprocessArgs: readonly string[];
  /**
   * How to compile this call on a worker, or why it must stay local. `preprocessArgs` is the local
   * -E run (dependency options kept, so it writes the user's depfile with the right target);
   * `compileArgs` are the options for compiling its output (inputs, outputs, -x and
   * preprocessor-only options removed).
   */
  readonly remote:
    | {
        readonly ok: true;
        readonly preprocessArgs: readonly string[];
        readonly compileArgs: readonly string[];
        /**
         * gcc: `-fdirectives-only` output compiled as source, which keeps column numbers and the
         * producer string of a local build. clang (no debug info only): full -E output.
         */
        readonly style: 'directives-only' | 'preprocessed';
      }
    | { readonly ok: false; readonly reason: string };
  /** Arguments that go into the preprocessor-mode key. */
  readonly keyArgs: readonly string[];
  /** The object embeds the working directory (-g, coverage, profiling): it joins the key. */
  readonly keyCwd: boolean;
  /** -march=native and friends: the host CPU joins the key. */
  readonly keyHostCpu: boolean;
  /** Files whose content affects the output though no -E run shows it (profile data, sanitizer lists). */
  readonly keyFiles: readonly string[];
  /**
   * Directories named by include and sysroot options, as given: gcc prints system headers by their
   * canonical path, so a retargeted symlink among these is seen only through their real paths.
   */
  readonly includeDirs: readonly string[];
  /** `-B` directories: where the driver looks for cc1, as and friends before its own. */
  readonly toolDirs: readonly string[];
  /** Headers named by `-include`/`-imacros`: gcc looks for a `.gch` of each along the include path. */
  readonly forcedIncludes: readonly string[];
  /**
   * The object records the driver's command line (clang -frecord-command-line, -grecord-command-line):
   * kiln must not add options of its own to the compile.
   */
  readonly recordsCommandLine: boolean;
}

export interface NotCacheable {
  readonly cacheable: false;
  readonly reason: string;
}

export type ParsedArgs = CacheableCompile | NotCacheable;

const no = (reason: string): NotCacheable => ({ cacheable: false, reason });

function withoutExtension(file: string): string {
  const ext = path.extname(file);
  return ext ? file.slice(0, -ext.length) : file;
}

function profileFile(option: string, value: string, cwd: string): string | NotCacheable {
  const file = path.resolve(cwd, value);
  try {
    if (fs.statSync(file).isFile()) return file;
  } catch {
    return no(`${option} file missing`);
  }
  return no(`${option} names a directory`);
}

/**
 * Parses one gcc/clang command line (`args` excludes the compiler itself). Never throws: anything
 * it does not understand well enough to cache correctly is reported as not cacheable.
 */
export function parseGccArgs(family: Family, rawArgs: readonly string[], cwd: string): ParsedArgs {
  const args = expandResponseFiles(rawArgs, cwd);
  if (!args) return no('unreadable response file');
  // Slot for slot with `args`: what each argument means in its short spelling.
  const norm: string[] = [];
  for (const [i, a] of args.entries()) {
    const isValue = i > 0 && SEPARATE_ARG.has(norm[i - 1]!) && !norm[i - 2]?.match(/^-(Xclang|mllvm)$/);
    if (!isValue && a.startsWith('--') && a.length > 2) {
      const short = normaliseLong(a);
      if (short === undefined) return no(`unknown long option (${a.split('=')[0]})`);
      norm.push(short);
    } else norm.push(a);
  }

  let compileOnly = false;
  let output: string | undefined;
  let currentLang: Language | undefined;
  let input: { file: string; index: number; language: Language } | undefined;
  let deps = false;
  let depFile: string | undefined;
  let explicitTarget = false;
  let partialDeps = false;
  let splitDwarf = false;
  let gcno = false;
  let keyCwd = false;
  let keyOutput = false;
  let keyHostCpu = false;
  let nonSourceInput = false;
  let depOptions = false;
  let recordsCommandLine = false;
  const keyFiles: string[] = [];
  const includeDirs: string[] = [];
  const toolDirs: string[] = [];
  const forcedIncludes: string[] = [];
  /** -P: the -E run must keep its line markers, they are how kiln learns the headers. */
  const noLineMarkers = new Set<number>();
  /** Indices into args that the -E run must not see (outputs, dependency options, -c). */
  const notForPreprocessor = new Set<number>();
  let outputIndex: number | undefined;
  let depFileIndex: number | undefined;
  /** Indices the remote compile of preprocessed output must not see (-x, preprocessor-only options). */
  const notForRemote = new Set<number>();
  let localOnly: string | undefined;

  for (let i = 0; i < norm.length; i++) {
    const a = norm[i]!;
    localOnly ??= LOCAL_ONLY(a);
    if (a === '-c') {
      compileOnly = true;
      notForPreprocessor.add(i);
      continue;
    }
    if (a === '-E') return no('preprocessor only (-E)');
    if (a === '-S') return no('assembly output (-S)');
    if (a === '-M' || a === '-MM') return no('dependency listing only (-M/-MM)');
    if (a === '-fsyntax-only') return no('no output (-fsyntax-only)');
    if (a === '-') return no('input from stdin');
    if (a === '-fmodules' || a.startsWith('-fmodules-') || a.startsWith('-fmodule-'))
      return no('clang modules');
    if (a.startsWith('-fplugin') || a.startsWith('-fpass-plugin')) return no('compiler plugin');
    if (a === '-ivfsoverlay' || a.startsWith('-ivfsoverlay')) return no('VFS overlay (-ivfsoverlay)');
    if (a === '--config' || a.startsWith('--config=') || a.startsWith('--config-'))
      return no('clang config file');
    if (a === '-Xpreprocessor' && /^-M/.test(norm[i + 1] ?? ''))
      return no('dependency options through -Xpreprocessor');
    if (a === '-P') {
      noLineMarkers.add(i);
      continue;
    }
    if (a.startsWith('-Wp,') && a.slice(4).split(',').includes('-P')) {
      if (a !== '-Wp,-P') return no('-P among other -Wp options');
      noLineMarkers.add(i);
      continue;
    }
    if (/^-(f|g)(no-)?record-(command-line|gcc-switches)$/.test(a)) {
      const on = !a.includes('no-');
      if (a.startsWith('-f') || a.includes('command-line')) recordsCommandLine = on;
    }
    if (a.startsWith('-specs=') || a.startsWith('--specs=') || a === '-specs') return no('spec file');
    if (EXTRA_OUTPUT_PREFIXES.some((p) => a.startsWith(p))) return no(`extra output files (${a})`);
    if (a.startsWith('-Wp,') && /(^|,)-M/.test(a.slice(4))) return no('dependency options through -Wp');
    if (a.startsWith('-Wa,') && /(^|,)-a/.test(a.slice(4))) return no('assembler listing (-Wa,-a)');

    if (DEP_FLAGS.has(a)) {
      if (a === '-MD' || a === '-MMD') deps = true;
      else depOptions = true;
      if (a === '-MMD' || a === '-MG') partialDeps = true;
      notForPreprocessor.add(i);
      continue;
    }
    const depOpt = a.slice(0, 3);
    if (DEP_WITH_ARG.has(depOpt)) {
      let value: string | undefined;
      depOptions = true;
      notForPreprocessor.add(i);
      if (a.length > 3) value = a.slice(3);
      else {
        value = norm[i + 1];
        if (value === undefined) return no(`${a} without a value`);
        notForPreprocessor.add(++i);
      }
      if (depOpt === '-MF') {
        depFile = value;
        depFileIndex = a.length > 3 ? undefined : i;
      } else explicitTarget = true;
      continue;
    }
    if (a === '-o' || (a.startsWith('-o') && a.length > 2)) {
      notForPreprocessor.add(i);
      if (a === '-o') {
        output = norm[i + 1];
        if (output === undefined) return no('-o without a value');
        notForPreprocessor.add(++i);
        outputIndex = i;
      } else {
        output = a.slice(2);
        outputIndex = undefined;
      }
      continue;
    }
    if (a === '-x' || (a.startsWith('-x') && a.length > 2)) {
      notForRemote.add(i);
      if (a === '-x') notForRemote.add(i + 1);
      const value = a === '-x' ? norm[++i] : a.slice(2);
      if (value === undefined) return no('-x without a value');
      if (value === 'none') currentLang = undefined;
      else if (value in Languages) currentLang = value as Language;
      else return no(`unsupported language (-x ${value})`);
      continue;
    }
    if (a === '-Xclang') {
      const next = norm[i + 1] ?? '';
      if (/^-(load|plugin|add-plugin|plugin-arg-)/.test(next)) return no('clang plugin (-Xclang)');
      if (/^-(M|dependency-|sys-header-deps|header-include-|module-dependency-dir)/.test(next))
        return no('dependency options through -Xclang');
      if (/^-(ivfsoverlay|include-pch)/.test(next)) return no(`${next} through -Xclang`);
      if (/^-record-command-line|^-dwarf-debug-flags/.test(next)) recordsCommandLine = true;
      i++;
      continue;
    }
    if (COLOR_FLAGS.test(a)) continue;
    if (a.startsWith('-g') && a !== '-gcc-toolchain') {
      keyCwd = a !== '-g0';
      if (a === '-gsplit-dwarf' || a === '-gsplit-dwarf=split') splitDwarf = true;
      else if (a === '-gno-split-dwarf' || a === '-gsplit-dwarf=single') splitDwarf = false;
      continue;
    }
    const listFile = LIST_FILE_OPTIONS.exec(a);
    if (listFile) {
      const file = profileFile(listFile[1]!, listFile[listFile.length - 1]!, cwd);
      if (typeof file !== 'string') return file;
      keyFiles.push(file);
      continue;
    }
    const dirOpt = INCLUDE_DIR_OPTION.exec(a);
    if (dirOpt) {
      const value = dirOpt[2] || (SEPARATE_ARG.has(a) ? norm[i + 1] : undefined);
      if (value) includeDirs.push(value);
    }
    if (a === '-B' || a.startsWith('-B')) {
      const value = a === '-B' ? norm[i + 1] : a.slice(2);
      if (value) toolDirs.push(value);
    }
    if (a === '--coverage' || a === '-coverage' || a === '-ftest-coverage') {
      gcno = true;
      keyCwd = true;
      keyOutput = true;
      continue;
    }
    if (
      a === '-fprofile-arcs' ||
      a.startsWith('-fprofile-generate') ||
      a.startsWith('-fprofile-instr-generate')
    ) {
      keyCwd = true;
      keyOutput = true;
      continue;
    }
    if (a === '-fprofile-use' || a === '-fprofile-instr-use' || a === '-fauto-profile') {
      return no(`${a} without its file`);
    }
    const profileOpt = /^(-fprofile-use|-fprofile-instr-use|-fprofile-sample-use|-fauto-profile)=(.+)$/.exec(
      a,
    );
    if (profileOpt) {
      const file = profileFile(profileOpt[1]!, profileOpt[2]!, cwd);
      if (typeof file !== 'string') return file;
      keyFiles.push(file);
      continue;
    }
    if (/^-m(arch|cpu|tune)=native$/.test(a)) {
      keyHostCpu = true;
      continue;
    }
    if (a === '-include-pch') return no('precompiled header');
    if (a.startsWith('-include') || a.startsWith('-imacros')) {
      const joined = a.replace(/^-(include|imacros)/, '');
      const header = joined || norm[i + 1];
      if (header !== undefined) forcedIncludes.push(header);
      if (
        header !== undefined &&
        ['.gch', '.pch'].some((ext) => fs.existsSync(path.resolve(cwd, `${header}${ext}`)))
      )
        return no('precompiled header');
    }
    if (PREPROCESSOR_ONLY_SEPARATE.has(a)) {
      notForRemote.add(i);
      notForRemote.add(i + 1);
    } else if (PREPROCESSOR_ONLY_PREFIX.test(a) || PREPROCESSOR_ONLY.has(a)) notForRemote.add(i);
    if (SEPARATE_ARG.has(a)) {
      if (i + 1 >= norm.length) return no(`${a} without a value`);
      i++;
      continue;
    }
    if (a.startsWith('-') && a.length > 1) continue;

    // Not an option: an input file.
    const language = currentLang ?? EXTENSIONS[path.extname(a)];
    if (!language) {
      nonSourceInput = true;
      continue;
    }
    if (input) return no('multiple source files');
    input = { file: a, index: i, language };
  }

  if (!compileOnly) return no('linking');
  if (nonSourceInput) return no('non-source input');
  if (!input) return no('no input file');
  if (output === '-') return no('output to stdout');
  // gcc rejects -MF/-MT/-MQ/-MP/-MG without -MD/-MMD; kiln's own -MD would make such a call succeed.
  if (depOptions && !deps) return no('dependency options without -MD');
  if (splitDwarf) keyOutput = true;

  const objectPath = output ?? `${withoutExtension(path.basename(input.file))}.o`;
  const base = withoutExtension(objectPath);
  const depPath = deps ? (depFile ?? `${base}.d`) : undefined;
  if (deps && !explicitTarget) keyOutput = true; // the depfile's target is the object path
  const extraOutputs: ExtraOutput[] = [];
  if (splitDwarf) extraOutputs.push({ kind: 'dwo', path: `${base}.dwo` });
  if (gcno) extraOutputs.push({ kind: 'gcno', path: `${base}.gcno` });

  const remotePlan = (): CacheableCompile['remote'] => {
    const reason =
      localOnly ??
      (keyHostCpu ? '-march=native' : undefined) ??
      (splitDwarf || gcno || keyFiles.length ? 'profile or split-DWARF outputs' : undefined) ??
      (keyOutput && !deps ? 'output path in the object' : undefined) ??
      (Languages[input!.language].preprocessed === undefined ? 'input needs no preprocessor' : undefined) ??
      (input!.language === 'assembler-with-cpp' ? 'assembler' : undefined) ??
      // clang records each source file's MD5 in its debug info: only the real files reproduce it.
      (family === 'clang' && keyCwd ? 'clang debug info' : undefined);
    if (reason) return { ok: false, reason };
    const style = family === 'gcc' ? 'directives-only' : 'preprocessed';
    const isDep = (i: number) =>
      notForPreprocessor.has(i) &&
      i !== outputIndex &&
      norm[i] !== '-c' &&
      !/^-o./.test(norm[i]!) &&
      norm[i] !== '-o';
    const preprocess = args.filter(
      (_, i) =>
        !COLOR_FLAGS.test(norm[i]!) && !noLineMarkers.has(i) && (!notForPreprocessor.has(i) || isDep(i)),
    );
    if (deps && depFile === undefined) preprocess.push('-MF', depPath!);
    if (deps && !explicitTarget) preprocess.push('-MQ', objectPath);
    preprocess.push('-E');
    if (style === 'directives-only') preprocess.push('-fdirectives-only');
    const compile = args.filter(
      (_, i) =>
        i !== input!.index &&
        !notForRemote.has(i) &&
        !noLineMarkers.has(i) &&
        !COLOR_FLAGS.test(norm[i]!) &&
        (!notForPreprocessor.has(i) || norm[i] === '-c'),
    );
    return { ok: true, preprocessArgs: preprocess, compileArgs: compile, style };
  };

  const keyArgs = norm.map((a, i) => {
    if (i === input!.index) return '<input>';
    if (i === outputIndex && !keyOutput) return '<output>';
    if (i === depFileIndex) return '<depfile>';
    if (a.startsWith('-MF') && a.length > 3) return '-MF<depfile>';
    if (a.startsWith('-o') && a.length > 2 && !keyOutput) return '-o<output>';
    return a;
  });

  return {
    cacheable: true,
    family,
    args,
    input: input.file,
    language: input.language,
    needsPreprocessor: Languages[input.language].preprocessed !== undefined,
    dependModeOnly: false,
    output: objectPath,
    depFile: depPath,
    depListing: !deps ? 'none' : partialDeps ? 'partial' : 'all',
    extraOutputs,
    preprocessArgs: [
      ...args.filter(
        (_, i) => !notForPreprocessor.has(i) && !noLineMarkers.has(i) && !COLOR_FLAGS.test(norm[i]!),
      ),
      '-E',
    ],
    remote: remotePlan(),
    keyArgs,
    keyCwd,
    keyHostCpu,
    keyFiles,
    includeDirs,
    toolDirs,
    forcedIncludes,
    recordsCommandLine,
  };
}
