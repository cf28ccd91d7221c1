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
const COLOR_FLAGS = /^-f(no-)?(diagnostics-color(=.*)?|color-diagnostics)$/;

export type Color = 'always' | 'never' | 'auto';

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
  /** Files whose content affects the output though no -E run shows it (profile data). */
  readonly keyFiles: readonly string[];
  readonly color: Color;
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
  let color: Color = 'auto';
  let nonSourceInput = false;
  const keyFiles: string[] = [];
  /** Indices into args that the -E run must not see (outputs, dependency options, -c). */
  const notForPreprocessor = new Set<number>();
  let outputIndex: number | undefined;
  let depFileIndex: number | undefined;
  /** Indices the remote compile of preprocessed output must not see (-x, preprocessor-only options). */
  const notForRemote = new Set<number>();
  let localOnly: string | undefined;

  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
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
    if (a.startsWith('-fplugin')) return no('compiler plugin');
    if (a.startsWith('-specs=') || a.startsWith('--specs=') || a === '-specs') return no('spec file');
    if (EXTRA_OUTPUT_PREFIXES.some((p) => a.startsWith(p))) return no(`extra output files (${a})`);
    if (a.startsWith('-Wp,') && /(^|,)-M/.test(a.slice(4))) return no('dependency options through -Wp');
    if (a.startsWith('-Wa,') && /(^|,)-a/.test(a.slice(4))) return no('assembler listing (-Wa,-a)');

    if (DEP_FLAGS.has(a)) {
      if (a === '-MD' || a === '-MMD') deps = true;
      if (a === '-MMD' || a === '-MG') partialDeps = true;
      notForPreprocessor.add(i);
      continue;
    }
    const depOpt = a.slice(0, 3);
    if (DEP_WITH_ARG.has(depOpt)) {
      let value: string | undefined;
      notForPreprocessor.add(i);
      if (a.length > 3) value = a.slice(3);
      else {
        value = args[i + 1];
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
        output = args[i + 1];
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
      const value = a === '-x' ? args[++i] : a.slice(2);
      if (value === undefined) return no('-x without a value');
      if (value === 'none') currentLang = undefined;
      else if (value in Languages) currentLang = value as Language;
      else return no(`unsupported language (-x ${value})`);
      continue;
    }
    if (a === '-Xclang') {
      const next = args[i + 1] ?? '';
      if (/^-(load|plugin|add-plugin|plugin-arg-)/.test(next)) return no('clang plugin (-Xclang)');
      i++;
      continue;
    }
    if (COLOR_FLAGS.test(a)) {
      if (
        a === '-fno-diagnostics-color' ||
        a === '-fno-color-diagnostics' ||
        a === '-fdiagnostics-color=never'
      ) {
        color = 'never';
      } else if (a === '-fdiagnostics-color=auto') color = 'auto';
      else color = 'always';
      continue;
    }
    if (a.startsWith('-g') && a !== '-gcc-toolchain') {
      keyCwd = a !== '-g0';
      if (a === '-gsplit-dwarf') {
        splitDwarf = true;
        keyOutput = true;
      }
      continue;
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
    if (a === '-include' || a === '-imacros') {
      const header = args[i + 1];
      if (header !== undefined && fs.existsSync(path.resolve(cwd, `${header}.gch`)))
        return no('precompiled header');
    }
    if (PREPROCESSOR_ONLY_SEPARATE.has(a)) {
      notForRemote.add(i);
      notForRemote.add(i + 1);
    } else if (PREPROCESSOR_ONLY_PREFIX.test(a) || PREPROCESSOR_ONLY.has(a)) notForRemote.add(i);
    if (SEPARATE_ARG.has(a)) {
      if (i + 1 >= args.length) return no(`${a} without a value`);
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

  const objectPath = output ?? `${withoutExtension(path.basename(input.file))}.o`;
  const base = withoutExtension(objectPath);
  const depPath = deps ? (depFile ?? `${base}.d`) : undefined;
  if (deps && !explicitTarget) keyOutput = true; // the depfile's target is the object path
  const extraOutputs: ExtraOutput[] = [];
  if (splitDwarf) extraOutputs.push({ kind: 'dwo', path: `${base}.dwo` });
  if (gcno) extraOutputs.push({ kind: 'gcno', path: `${base}.gcno` });

  if (input.language === 'assembler') {
    try {
      const text = fs.readFileSync(path.resolve(cwd, input.file), 'latin1');
      if (/^\s*\.(include|incbin)\b/m.test(text)) return no('assembler .include');
    } catch {
      return no('unreadable source file');
    }
  }

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
      args[i] !== '-c' &&
      !/^-o./.test(args[i]!) &&
      args[i] !== '-o';
    const preprocess = args.filter(
      (a, i) => !COLOR_FLAGS.test(a) && (!notForPreprocessor.has(i) || isDep(i)),
    );
    if (deps && depFile === undefined) preprocess.push('-MF', depPath!);
    if (deps && !explicitTarget) preprocess.push('-MQ', objectPath);
    preprocess.push('-E');
    if (style === 'directives-only') preprocess.push('-fdirectives-only');
    const compile = args.filter(
      (a, i) =>
        i !== input!.index &&
        !notForRemote.has(i) &&
        !COLOR_FLAGS.test(a) &&
        (!notForPreprocessor.has(i) || a === '-c'),
    );
    return { ok: true, preprocessArgs: preprocess, compileArgs: compile, style };
  };

  const keyArgs = args.map((a, i) => {
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
      ...args.filter((_, i) => !notForPreprocessor.has(i) && !COLOR_FLAGS.test(args[i]!)),
      '-E',
    ],
    remote: remotePlan(),
    keyArgs: keyArgs.filter((a) => !COLOR_FLAGS.test(a)),
    keyCwd,
    keyHostCpu,
    keyFiles,
    color,
  };
}
