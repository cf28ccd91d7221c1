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

/** A `-l`/static library: linked into the rlib or archive, so its bytes belong in the key. */
export interface StaticLib {
  readonly name: string;
  /** `-L native=`/`-L all=`/`-L` directories, in order, searched for lib<name>.a. */
  readonly searchDirs: readonly string[];
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
  readonly staticLibs: readonly StaticLib[];
  /** `-C linker=`: part of a proc-macro's identity. */
  readonly linker: string | undefined;
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
function searchPath(value: string): [string, string] {
  const m = /^(dependency|crate|native|framework|all)=(.*)$/s.exec(value);
  return m ? [m[1]!, m[2]!] : ['all', value];
}

/** `-l [kind[:mods]=]name[:rename]` → kind and name. */
function linkLib(value: string): { kind: string; name: string } {
  const eq = value.indexOf('=');
  const kind = eq >= 0 ? value.slice(0, eq).split(':')[0]! : 'dylib';
  const name = (eq >= 0 ? value.slice(eq + 1) : value).split(':')[0]!;
  return { kind, name };
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
  const searchDirs: [string, string][] = [];
  const libs: { kind: string; name: string }[] = [];
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
        continue;
      case '--target':
        target = v;
        keyArgs.push(`${opt}=${v}`);
        continue;
      case '-L': {
        const [kind, dir] = searchPath(v);
        // Dependency directories only help rustc find crates the --extern files already pin.
        if (kind !== 'dependency' && kind !== 'crate') searchDirs.push([kind, path.resolve(cwd, dir)]);
        continue;
      }
      case '-l':
        libs.push(linkLib(v));
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
        if (name === 'linker') linker = path.resolve(cwd, val);
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

  const libDirs = searchDirs.filter(([kind]) => kind === 'native' || kind === 'all').map(([, dir]) => dir);
  const staticLibs = libs
    .filter((l) => l.kind === 'static')
    .map((l) => ({ name: l.name, searchDirs: libDirs }));
  // Search paths other than dependency ones join the key by position; their files by content below.
  for (const [kind, dir] of searchDirs) keyArgs.push(`-L${kind}=${dir}`);

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
    staticLibs,
    linker,
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
