/**
 * Argument parsing for rustc as cargo (or a person) calls it: decides whether a call is cacheable
 * and, if so, what the key needs (the arguments minus paths that only name outputs, the extern
 * crates and static libraries by path) and which files the compile writes.
 */
import path from 'node:path';

/** Crate types whose output rustc writes without a system linker; proc-macros link but are keyed on it. */
const CACHEABLE_CRATE_TYPES = new Set(['lib', 'rlib', 'staticlib', 'proc-macro']);
const SUPPORTED_EMITS = new Set(['link', 'metadata', 'dep-info']);
/** -C options whose presence makes the outputs something kiln cannot collect or key. */
const UNCACHEABLE_CODEGEN: Record<string, string> = {
  incremental: 'incremental compilation',
  'save-temps': '-C save-temps',
  'profile-generate': 'profile generation',
  'profile-use': 'profile-guided optimisation',
};

/** Options that take a value, in their long and short spellings. */
const WITH_VALUE = new Set([
  '--cfg',
  '--check-cfg',
  '-L',
  '-l',
  '--crate-type',
  '--crate-name',
  '--edition',
  '--emit',
  '--print',
  '-o',
  '--out-dir',
  '--explain',
  '--target',
  '-A',
  '--allow',
  '-W',
  '--warn',
  '--force-warn',
  '-D',
  '--deny',
  '-F',
  '--forbid',
  '--cap-lints',
  '-C',
  '--codegen',
  '-Z',
  '--extern',
  '--sysroot',
  '--error-format',
  '--json',
  '--color',
  '--diagnostic-width',
  '--remap-path-prefix',
  '--env-set',
]);

/**
 * A `-L` directory whose libraries can end up in the output: static libraries (`-l static=` or a
 * `#[link(kind = "static")]` in the source, bundled into the rlib) in `native`/`all` directories,
 * crates (`extern crate` without `--extern`) in `crate`/`all` directories. Their files join the key
 * by content. `dependency` directories only lead rustc to crates the `--extern` files pin already.
 */
export interface SearchDir {
  readonly kind: 'native' | 'crate' | 'all' | 'framework';
  readonly dir: string;
}

export interface RustCompile {
  readonly cacheable: true;
  readonly crateName: string;
  readonly crateTypes: readonly string[];
  readonly emits: ReadonlySet<string>;
  /** The source file as given. */
  readonly input: string;
  /** Absolute output directory (--out-dir, else the working directory). */
  readonly outDir: string;
  readonly extraFilename: string;
  /** `--target` as given; a path to a JSON target spec is keyed by content. */
  readonly target: string | undefined;
  /** `--extern name=path`: the files whose content joins the key (path resolved against cwd). */
  readonly externs: readonly (readonly [string, string])[];
  readonly searchDirs: readonly SearchDir[];
  /** `-C linker=` as given (a path, or a name looked up in PATH): part of a proc-macro's identity. */
  readonly linker: string | undefined;
  /** `-C target-cpu=native`: the host CPU joins the key. */
  readonly keyHostCpu: boolean;
  /** The arguments that make up the key: output paths, search paths and extern paths removed. */
  readonly keyArgs: readonly string[];
  /** The arguments as given (what the compile runs with). */
  readonly args: readonly string[];
}

export interface NotCacheable {
  readonly cacheable: false;
  readonly reason: string;
}

const no = (reason: string): NotCacheable => ({ cacheable: false, reason });

/** Splits `--opt=value`, `-Cvalue`, `-C value` into [option, value, consumed next arg]. */
function optionAndValue(
  arg: string,
  next: string | undefined,
): { opt: string; value: string | undefined; usedNext: boolean } {
  if (arg.startsWith('--')) {
    const eq = arg.indexOf('=');
    if (eq > 0) return { opt: arg.slice(0, eq), value: arg.slice(eq + 1), usedNext: false };
    if (WITH_VALUE.has(arg)) return { opt: arg, value: next, usedNext: true };
    return { opt: arg, value: undefined, usedNext: false };
  }
  const short = arg.slice(0, 2);
  if (WITH_VALUE.has(short)) {
    if (arg.length > 2) return { opt: short, value: arg.slice(2), usedNext: false };
    return { opt: short, value: next, usedNext: true };
  }
  return { opt: arg, value: undefined, usedNext: false };
}

/** `-L [kind=]path` → [kind, path]. */
function searchPath(value: string): [SearchDir['kind'] | 'dependency', string] {
  const m = /^(dependency|crate|native|framework|all)=(.*)$/s.exec(value);
  return m ? [m[1] as SearchDir['kind'] | 'dependency', m[2]!] : ['all', value];
}

/** Parses rustc's arguments; anything kiln cannot key or collect is reported with a reason. */
export function parseRustcArgs(args: readonly string[], cwd: string): RustCompile | NotCacheable {
  let crateName: string | undefined;
  const crateTypes: string[] = [];
  const emits = new Set<string>();
  let emitGiven = false;
  const inputs: string[] = [];
  let outDir: string | undefined;
  let extraFilename = '';
  let target: string | undefined;
  let linker: string | undefined;
  const externs: [string, string][] = [];
  const searchDirs: SearchDir[] = [];
  let keyHostCpu = false;
  const keyArgs: string[] = [];

  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg.startsWith('@')) return no('argument file');
    if (/^-[vV]+$/.test(arg)) return no('query (-vV, --print, --help)');
    if (!arg.startsWith('-') || arg === '-') {
      inputs.push(arg);
      continue;
    }
    const { opt, value, usedNext } = optionAndValue(arg, args[i + 1]);
    if (usedNext) i++;
    if (WITH_VALUE.has(opt) && value === undefined) return no(`${opt} without a value`);
    const v = value ?? '';
    switch (opt) {
      case '-V':
      case '--version':
      case '-v':
      case '--verbose':
      case '-h':
      case '--help':
      case '--print':
      case '--explain':
        return no('query (-vV, --print, --help)');
      case '--test':
        return no('crate type bin links a final binary');
      case '-o':
        return no('rustc -o');
      case '--sysroot':
        return no('--sysroot');
      case '--crate-name':
        crateName = v;
        keyArgs.push(`${opt}=${v}`);
        continue;
      case '--crate-type':
        crateTypes.push(...v.split(','));
        keyArgs.push(`${opt}=${v}`);
        continue;
      case '--emit':
        emitGiven = true;
        for (const kind of v.split(',')) {
          if (kind.includes('=')) return no('--emit with a path');
          if (!SUPPORTED_EMITS.has(kind)) return no(`--emit=${kind}`);
          emits.add(kind);
        }
        keyArgs.push(`${opt}=${v}`);
        continue;
      case '--out-dir':
        outDir = path.resolve(cwd, v);
        // A relative out-dir is written as given into the .d file and artifact notifications.
        if (!path.isAbsolute(v)) keyArgs.push(`${opt}=${v}`);
        continue;
      case '--target':
        target = v;
        keyArgs.push(`${opt}=${v}`);
        continue;
      case '-L': {
        const [kind, dir] = searchPath(v);
        if (kind !== 'dependency') searchDirs.push({ kind, dir: path.resolve(cwd, dir) });
        continue;
      }
      case '-l':
        keyArgs.push(`${opt}=${v}`);
        continue;
      case '--extern': {
        const eq = v.indexOf('=');
        if (eq < 0) {
          keyArgs.push(`${opt}=${v}`); // a sysroot crate such as proc_macro: the compiler identity covers it
          continue;
        }
        const name = v.slice(0, eq);
        externs.push([name, path.resolve(cwd, v.slice(eq + 1))]);
        keyArgs.push(`${opt}=${name}`);
        continue;
      }
      case '-C':
      case '--codegen': {
        const eq = v.indexOf('=');
        const name = (eq >= 0 ? v.slice(0, eq) : v).replaceAll('_', '-');
        const val = eq >= 0 ? v.slice(eq + 1) : '';
        const reason = UNCACHEABLE_CODEGEN[name];
        if (reason) return no(reason);
        if (name === 'split-debuginfo' && val !== 'off') return no('split debuginfo');
        if (name === 'extra-filename') extraFilename = val;
        if (name === 'linker') linker = val;
        if (name === 'target-cpu' && val === 'native') keyHostCpu = true;
        keyArgs.push(`-C${name}=${val}`);
        continue;
      }
      default:
        keyArgs.push(value === undefined ? opt : `${opt}=${value}`);
    }
  }

  if (inputs.length === 0) return no('no input file');
  if (inputs.length > 1) return no('multiple input files');
  if (inputs[0] === '-') return no('source from stdin');
  if (!crateName) return no('crate name not on the command line');
  if (crateTypes.length === 0) return no('crate type not on the command line');
  for (const type of crateTypes) {
    if (!CACHEABLE_CRATE_TYPES.has(type)) return no(`crate type ${type} links a final binary`);
  }
  if (!emitGiven) emits.add('link');

  // Search paths join the key by position; their libraries by content (see SearchDir).
  for (const { kind, dir } of searchDirs) keyArgs.push(`-L${kind}=${dir}`);

  return {
    cacheable: true,
    crateName,
    crateTypes,
    emits,
    input: inputs[0]!,
    outDir: outDir ?? cwd,
    extraFilename,
    target,
    externs,
    searchDirs,
    linker,
    keyHostCpu,
    keyArgs,
    args,
  };
}

/** The target's library naming, or undefined for targets kiln does not name outputs for. */
function libraryNaming(triple: string): { dylib: string; staticlib: string } | undefined {
  if (/windows/.test(triple)) return undefined;
  if (/apple|darwin/.test(triple)) return { dylib: '.dylib', staticlib: '.a' };
  return { dylib: '.so', staticlib: '.a' };
}

/**
 * The files a compile writes, as [kind, absolute path]: kind is what the cache calls the blob.
 * `host` is rustc's host triple (proc-macros are built for it); undefined when the target's file
 * names are unknown to kiln.
 */
export function rustOutputs(parsed: RustCompile, host: string): [string, string][] | undefined {
  const base = `${parsed.crateName}${parsed.extraFilename}`;
  const targetTriple = parsed.target?.endsWith('.json') ? undefined : (parsed.target ?? host);
  const out: [string, string][] = [];
  const at = (file: string) => path.join(parsed.outDir, file);
  if (parsed.emits.has('link')) {
    for (const type of new Set(parsed.crateTypes.map((t) => (t === 'lib' ? 'rlib' : t)))) {
      if (type === 'rlib') out.push(['rlib', at(`lib${base}.rlib`)]);
      else {
        const naming = libraryNaming(type === 'proc-macro' ? host : (targetTriple ?? ''));
        if (!naming || (type !== 'proc-macro' && !targetTriple)) return undefined;
        out.push(
          type === 'proc-macro'
            ? ['proc-macro', at(`lib${base}${naming.dylib}`)]
            : ['staticlib', at(`lib${base}${naming.staticlib}`)],
        );
      }
    }
  }
  if (parsed.emits.has('metadata')) out.push(['rmeta', at(`lib${base}.rmeta`)]);
  if (parsed.emits.has('dep-info')) out.push(['dep-info', at(`${base}.d`)]);
  return out;
}

/** The arguments without their `--emit` options (for a dep-info-only run beside the real compile). */
export function withoutEmit(args: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--emit') i++;
    else if (!args[i]!.startsWith('--emit=')) out.push(args[i]!);
  }
  return out;
}
