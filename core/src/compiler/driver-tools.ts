/**
 * The programs a gcc/clang driver runs for a call (cc1, cc1plus, as…), learned from its `-###`
 * output: the compiler binary and its `--version` do not tell another `as` earlier in PATH, in a
 * `-B` dir or in COMPILER_PATH, or a cc1 the driver cannot find.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { FileDigestCache } from '../cache/digest.js';
import { dirStampOf, KeyHasher } from '../cache/digest.js';
import { findExecutable } from '../client/find-executable.js';
import { runCaptured } from './run.js';

/** Options that change which programs the driver runs (as opposed to what they are given). */
const TOOL_CHOICE =
  /^(-B|--prefix|--?target|-m(32|64|x32|16)$|-f(no-)?integrated-as$|-(no-)?integrated-as$|--?gcc-toolchain|-ccc-|--driver-mode|--?sysroot|-save-temps|-x|-fuse-ld|-specs|--rtlib|-no-canonical-prefixes|-fno-integrated-cc1|-fintegrated-cc1)/;
/** Those of them whose value may be the next argument. */
const TOOL_CHOICE_SEPARATE = new Set([
  '-B',
  '--prefix',
  '-target',
  '--target',
  '-gcc-toolchain',
  '--sysroot',
  '-x',
  '-specs',
]);

/** The arguments that decide which programs the driver runs, with their values. */
function toolChoice(args: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    if (!TOOL_CHOICE.test(args[i]!)) continue;
    out.push(args[i]!);
    if (TOOL_CHOICE_SEPARATE.has(args[i]!) && i + 1 < args.length) out.push(args[++i]!);
  }
  return out;
}

interface Learned {
  /** First words of the driver's commands: absolute paths, or names it will look up in PATH. */
  readonly tools: readonly string[];
  /** Directories the driver searched, with the stat that says none of them changed since. */
  readonly dirs: readonly (readonly [string, string])[];
}

function dirStamp(dir: string): string {
  const st = fs.statSync(dir, { bigint: true, throwIfNoEntry: false });
  return st ? dirStampOf(st) : 'missing';
}

/** Tools are never kiln itself: nothing to skip in their PATH lookups. */
const NO_SKIP: ReadonlySet<string> = new Set();

/** The first word of each command line in `-###` output (gcc prints it bare, clang quoted). */
export function commandsOf(stderr: string): string[] {
  const tools: string[] = [];
  for (const line of stderr.split('\n')) {
    if (!line.startsWith(' ') || line.startsWith(' (')) continue;
    const m = line.startsWith(' "') ? /^ "((?:[^"\\]|\\.)*)"/.exec(line) : /^ (\S+)/.exec(line);
    if (!m) continue;
    const tool = m[1]!.replace(/\\(.)/g, '$1');
    if (!tools.includes(tool)) tools.push(tool);
  }
  return tools;
}

export class DriverTools {
  private readonly learned = new Map<string, Learned>();

  constructor(
    private readonly digests: FileDigestCache,
    private readonly maxEntries = 1000,
  ) {}

  /**
   * A digest of every program the driver would run for this call, each by content; undefined when
   * the driver fails to say or names a program that cannot be found (the call then fails as
   * typed, so kiln does not cache it). Without `programSignature` (a wrapper script, whose choice
   * can change while its file does not) the driver is asked every time. `language` is the
   * input's (cc1 or cc1plus, or only as).
   */
  async digest(
    program: string,
    programSignature: string | undefined,
    language: string,
    args: readonly string[],
    toolDirs: readonly string[],
    cwd: string,
    env: Readonly<Record<string, string>>,
  ): Promise<string | undefined> {
    const memoKey = [
      program,
      programSignature,
      env.PATH,
      env.COMPILER_PATH,
      env.GCC_EXEC_PREFIX,
      env.CCC_OVERRIDE_OPTIONS,
      cwd,
      language,
      ...toolChoice(args),
    ].join('\0');
    let learned = programSignature === undefined ? undefined : this.learned.get(memoKey);
    if (!learned || learned.dirs.some(([dir, stamp]) => dirStamp(dir) !== stamp)) {
      learned = await this.learn(program, args, toolDirs, cwd, env);
      if (!learned) return undefined;
      if (this.learned.size >= this.maxEntries) this.learned.clear();
      if (programSignature !== undefined) this.learned.set(memoKey, learned);
    }
    const h = new KeyHasher();
    for (const tool of learned.tools) {
      // As execvp: a name with a slash from the cwd (a relative -B), a bare one in PATH.
      const file = findExecutable(tool, env.PATH, cwd, NO_SKIP);
      const d = file === undefined ? undefined : this.digests.get(file);
      if (!d) return undefined;
      // By name as printed and content, not where it was found: /bin/as and /usr/bin/as are one.
      h.add('tool', path.isAbsolute(tool) ? path.basename(tool) : tool).add('content', d.digest);
    }
    return h.digest();
  }

  private async learn(
    program: string,
    args: readonly string[],
    toolDirs: readonly string[],
    cwd: string,
    env: Readonly<Record<string, string>>,
  ): Promise<Learned | undefined> {
    const run = await runCaptured(program, program, [...args, '-###'], cwd, env);
    if (run.exitCode !== 0 || run.failure) return undefined;
    const text = run.stderr.toString();
    const tools = commandsOf(text);
    if (tools.length === 0) return undefined;
    // A new file in a directory the driver searched changes its choice. gcc prints the ones it
    // searches (COMPILER_PATH) and leaves a program it did not find there to PATH at exec time,
    // which digest() looks up on every call; clang looks in PATH itself and prints what it found.
    const gccSearched = /^COMPILER_PATH=(.*)$/m.exec(text)?.[1]?.split(':');
    // A -B value is a directory or a file-name prefix (`-B/opt/bin/x86-`): watch both readings.
    const watched = toolDirs.flatMap((d) => [d, path.dirname(d)]);
    if (gccSearched) watched.push(...gccSearched);
    else {
      watched.push(...(env.PATH ?? '').split(':'));
      for (const tool of tools) if (path.isAbsolute(tool)) watched.push(path.dirname(tool));
    }
    const dirs = new Set(watched.filter(Boolean).map((d) => path.resolve(cwd, d)));
    return { tools, dirs: [...dirs].map((d) => [d, dirStamp(d)] as const) };
  }
}
