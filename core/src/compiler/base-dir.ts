/**
 * `base_dir` (ccache's base_dir, sccache's basedirs): builds of the same sources in two directories
 * under one base directory share cache entries, but only where the compiler's output does not name
 * the directory.
 *
 * kiln never changes the command the compiler runs (a hit must be what that command writes there),
 * so the rewriting is in the key alone. An absolute path under base_dir is keyed by where it sits
 * from the working directory: `/b/co1/src/a.c` from `/b/co1/build` and `/b/co2/src/a.c` from
 * `/b/co2/build` both become "one level up, then /src/a.c", spelled `\0 1\0/src/a.c` (a NUL never
 * appears in an argument or a path). That is done to path arguments, to the line markers of the
 * preprocessor's output (not to its text: an expanded `__FILE__` stays as it is and keeps
 * entries apart), and to the names of the files it read. What is left that can name the directory:
 *
 * - debug info (-g): the working directory and every source's path, unless prefix maps hide them.
 *   The key then holds each name as the map leaves it, so it is shared only when those agree;
 * - options whose output carries source paths without -g (sanitizers, LTO, coverage, OpenMP…):
 *   not relocated at all (`refusal`);
 * - `__builtin_FILE()` (C++ std::source_location): markers are not relocated when -E shows it;
 * - depfiles: stored with `\0<ups>\0` in place of the directory and written back for the
 *   directory of the hit (`toStored` / `fromStored`);
 * - whatever else: an object, stdout or stderr that holds base_dir's path is pinned to the
 *   directory and command it was made for (`mentions`), and is not replayed elsewhere.
 */
import { createHash } from 'node:crypto';
import path from 'node:path';

/** Characters that depfiles or line markers escape or split on: no relocation where a directory has one. */
const AWKWARD = /[\s\\"'#$:%*?[\]\0]/;

/** Options whose output names source files even without -g, or hashes their paths. */
const NAMES_SOURCES =
  /^(-fprofile|-ftest-coverage|-fcoverage|--?coverage$|-fsanitize|-flto|-fopenmp|-funique-internal-linkage-names|-gsplit-dwarf|-fdebug-macro$|-g(gdb|dwarf-?\d*)?3$|-gz|-fcs-profile|-fxray|-fsave-optimization-record|-ftime-trace|-fcrash-diagnostics|-frecord-(gcc-switches|command-line)$|-grecord-command-line$)/;

/** Path-valued options whose (joined or separate) value is relocated in the key. */
const PATH_OPTIONS = [
  '-I',
  '-isystem',
  '-iquote',
  '-idirafter',
  '-include',
  '-imacros',
  '-isysroot',
  '--sysroot=',
  '--sysroot',
  '-iprefix',
  '-iwithprefix',
  '-iwithprefixbefore',
  '-MT',
  '-MQ',
  '-o',
];
const PREFIX_MAP = /^(-f(?:debug|file|macro)-prefix-map=)([^=]*)(=.*)$/;
const DEBUG_MAP = /^-f(?:debug|file)-prefix-map=([^=]*)=(.*)$/;
const COMPILATION_DIR = /^-f(?:debug|file)-compilation-dir=(.*)$/;

const escapeRe = (s: string) => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

/** A NUL-free digest of the call as typed, for entries that must stay where they were made. */
export function pinOf(cwd: string, argv: readonly string[]): Buffer {
  return createHash('sha256').update(cwd).update('\0').update(argv.join('\0')).digest();
}

export class BaseDir {
  /** The working directory and its ancestors down to base_dir: `ancestors[k]` is k levels up. */
  private readonly ancestors: readonly string[];
  private readonly atStart: RegExp;
  private readonly inMarkers: RegExp;
  private readonly index: ReadonlyMap<string, number>;
  /** `-fdebug-prefix-map`/`-ffile-prefix-map` pairs in command-line order. */
  private readonly maps: readonly (readonly [string, string])[];
  private readonly compilationDir: string | undefined;
  /** Set once this call's reason for not sharing was counted: a call counts one reason. */
  counted = false;

  private constructor(
    readonly base: string,
    readonly cwd: string,
    args: readonly string[],
  ) {
    const up: string[] = [];
    for (let dir = cwd; dir.length >= base.length; dir = path.dirname(dir)) {
      up.push(dir);
      if (dir === base) break;
    }
    this.ancestors = up;
    this.index = new Map(up.map((dir, k) => [dir, k]));
    // Longest first, so the nearest ancestor wins.
    const alts = up.map(escapeRe).join('|');
    this.atStart = new RegExp(`(^|[ \\t\\n])(${alts})(?=[/ \\t\\n:]|$)`, 'g');
    this.inMarkers = new RegExp(`^(#(?:line)? \\d+ ")(${alts})(?=[/"])`, 'gm');
    const maps: [string, string][] = [];
    let compilationDir: string | undefined;
    for (const a of args) {
      const m = DEBUG_MAP.exec(a);
      if (m) maps.push([m[1]!, m[2]!]);
      const c = COMPILATION_DIR.exec(a);
      if (c) compilationDir = c[1];
    }
    this.maps = maps;
    this.compilationDir = compilationDir;
  }

  /**
   * The relocation for one call, or why there is none: the working directory (as the compiler
   * records it) must lie under base_dir and both must be plain paths; options that put source
   * paths into the output without -g rule it out.
   */
  static for(base: string, cwd: string, args: readonly string[]): BaseDir | { readonly reason: string } {
    if (cwd !== base && !cwd.startsWith(`${base}/`)) return { reason: 'working directory outside base_dir' };
    if (AWKWARD.test(cwd)) return { reason: 'working directory with spaces or special characters' };
    const named = args.find((a) => NAMES_SOURCES.test(a));
    if (named) return { reason: `${named.split('=')[0]} (the output names source paths)` };
    return new BaseDir(base, cwd, args);
  }

  /** Whether `p` is base_dir or lies under it (as a string, the way compilers print paths). */
  under(p: string): boolean {
    return p === this.base || p.startsWith(`${this.base}/`);
  }

  /** `p` as the key spells it: relative to the working directory when under base_dir, else as is. */
  path(p: string): string {
    if (!this.under(p)) return p;
    for (const [k, dir] of this.ancestors.entries()) {
      if (p === dir || p.startsWith(`${dir}/`)) return `\0${k}\0${p.slice(dir.length)}`;
    }
    return p;
  }

  /** The key's arguments with the values of path options relocated (and prefix maps' old halves). */
  args(keyArgs: readonly string[]): string[] {
    return keyArgs.map((a, i) => {
      const prev = keyArgs[i - 1];
      if (a.startsWith('/') && prev !== undefined && PATH_OPTIONS.includes(prev)) return this.path(a);
      const map = PREFIX_MAP.exec(a);
      if (map) return `${map[1]}${this.path(map[2]!)}${map[3]}`;
      for (const opt of PATH_OPTIONS) {
        if (a.length > opt.length && a.startsWith(opt) && a[opt.length] === '/')
          return opt + this.path(a.slice(opt.length));
      }
      return a;
    });
  }

  /** The preprocessor's output with the directories in its line markers relocated (its text untouched). */
  markers(preprocessed: Buffer): Buffer {
    const text = preprocessed.toString('latin1');
    return Buffer.from(
      text.replace(this.inMarkers, (_, head: string, dir: string) => `${head}\0${this.index.get(dir)}\0`),
      'latin1',
    );
  }

  /**
   * With -g: the directory the object records (DW_AT_comp_dir) and the name each file gets in the
   * debug info, as the prefix maps leave them. Two builds share an entry only when these agree.
   * A name two maps could rewrite stays as it is (gcc takes the last map, clang 14 the first in
   * sorted order), so such a build is never shared.
   */
  debugNames(names: readonly string[]): { readonly cwd: string; readonly names: readonly string[] } {
    return { cwd: this.mapped(this.compilationDir ?? this.cwd), names: names.map((n) => this.mapped(n)) };
  }

  /** Whether the debug info would hold a path under base_dir (for the stats' reason). */
  debugNamesDirectory(): boolean {
    return this.under(this.mapped(this.compilationDir ?? this.cwd));
  }

  private mapped(name: string): string {
    const hits = this.maps.filter(([old]) => name.startsWith(old));
    if (hits.length !== 1) return name;
    const [old, now] = hits[0]!;
    return now + name.slice(old.length);
  }

  /** Whether `data` holds base_dir's path: such an output names its directory. */
  mentions(data: Buffer): boolean {
    return data.includes(this.base);
  }

  /** A depfile as stored: each path under base_dir starts with `\0<ups>\0` instead of its directory. */
  toStored(depfile: Buffer): Buffer {
    const text = depfile.toString('latin1');
    return Buffer.from(
      text.replace(this.atStart, (_, sep: string, dir: string) => `${sep}\0${this.index.get(dir)}\0`),
      'latin1',
    );
  }

  /** A stored depfile written out for this working directory; undefined when it reaches above base_dir. */
  fromStored(stored: Buffer): Buffer | undefined {
    let ok = true;
    const text = stored.toString('latin1').replace(/\0(\d+)\0/g, (_, k: string) => {
      const dir = this.ancestors[Number(k)];
      if (dir === undefined) ok = false;
      return dir ?? '';
    });
    return ok ? Buffer.from(text, 'latin1') : undefined;
  }
}

/** Names in line markers (including `<built-in>` and the `dir//` marker -g adds), each once. */
export function markerNames(preprocessed: Buffer): string[] {
  const names = new Set<string>();
  for (const m of preprocessed.toString('latin1').matchAll(/^#(?:line)? \d+ "((?:[^"\\\n]|\\.)*)"/gm))
    names.add(m[1]!);
  return [...names];
}
