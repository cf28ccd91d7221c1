/**
 * What a differential scenario is: a starting tree and compile command, then one or more changes,
 * each with the outcome kiln must report. runner.ts runs them; scenarios-*.ts are the tables.
 *
 * Strings in `compiler`, `args`, `env` values, symlink targets and file contents may use
 * `{dir}` (the scenario's own directory, absolute) and `{PATH}` (the sandbox's PATH).
 */

/** kiln's settings that change how it caches; read at daemon start, so each gets its own daemon. */
export const CONFIGS = {
  default: {},
  'no-depend': { KILN_DEPEND_MODE: 'false' },
  'no-direct': { KILN_DIRECT_MODE: 'false' },
  /** base_dir is the sandbox's work dir, which holds every scenario directory ({work}: daemons.ts). */
  'base-dir': { KILN_BASE_DIR: '{work}' },
  /** base_dir with preprocessor mode only: what is shared must be found without manifests too. */
  'base-dir-no-direct': { KILN_BASE_DIR: '{work}', KILN_DIRECT_MODE: 'false' },
} as const satisfies Record<string, Record<string, string>>;
export type Config = keyof typeof CONFIGS;
/** The configs every mutation runs under (base_dir has its own scenarios). */
export const ALL_CONFIGS: readonly Config[] = ['default', 'no-depend', 'no-direct'];

/**
 * What one kiln call did, from its stats delta: hit (direct or preprocessed), miss (compiled and
 * stored), failed (the compile failed, nothing stored), uncached (kiln ran the command as is).
 */
export const Outcomes = ['hit', 'miss', 'failed', 'uncached'] as const;
export type Outcome = (typeof Outcomes)[number];

/** One outcome, several acceptable ones, or one per config. */
export type Expect =
  | Outcome
  | readonly Outcome[]
  | Readonly<Partial<Record<Config, Outcome | readonly Outcome[]>>>;

/**
 * A compile that fails in the preprocessor (a missing header): kiln runs the command as it is and
 * counts it as "preprocessor error" (as ccache does), or counts a failed compile. Both are right.
 */
export const FAILS: Expect = ['failed', 'uncached'];

export type FileSpec =
  | string
  | Buffer
  | { readonly symlink: string }
  | { readonly content: string | Buffer; readonly mode?: number; readonly mtime?: number };

/** Variables to set; `undefined` unsets one. */
export type EnvPatch = Readonly<Record<string, string | undefined>>;

/** The parts of a compile a change may alter; function changes get it to mutate. */
export interface CommandState {
  compiler: string;
  args: string[];
  env: Record<string, string | undefined>;
  /** Relative to the scenario directory; may go through a symlink (PWD spells it that way). */
  cwd: string;
  umask: number | undefined;
  /** Which of the config's daemons answers (they share one cache dir). */
  daemon: number;
}

export interface ScenarioContext {
  /** The scenario's directory (absolute). */
  readonly dir: string;
  readonly state: CommandState;
  /** Absolute path of a file in the scenario directory. */
  path(rel: string): string;
  /** Writes a file (placeholders expanded) and notes the time, so kiln is called only once it settled. */
  write(rel: string, content: string | Buffer): void;
  /** Notes that the tree changed some other way (the runner waits before the next kiln call). */
  touched(): void;
}

export type Change =
  | { readonly write: string; readonly content: string | Buffer; readonly keepTimes?: boolean }
  | { readonly append: string; readonly content: string }
  /** Replaces the first occurrence of `from`; throws when it is absent (a broken scenario). */
  | { readonly edit: string; readonly from: string; readonly to: string; readonly keepTimes?: boolean }
  | { readonly remove: string }
  /** Creates or retargets a symlink. */
  | { readonly symlink: string; readonly target: string }
  | { readonly chmod: string; readonly mode: number }
  /** Sets the mtime (seconds since the epoch; default: now + 10 s) and leaves the content alone. */
  | { readonly touch: string; readonly mtime?: number }
  | { readonly args: readonly string[] }
  /** Inserts arguments at the front (or at the end). */
  | { readonly addArgs: readonly string[]; readonly atEnd?: boolean }
  | { readonly dropArgs: readonly string[] }
  | { readonly replaceArg: string; readonly with: string | readonly string[] }
  | { readonly env: EnvPatch }
  | { readonly cwd: string }
  | { readonly compiler: string }
  | { readonly umask: number }
  /** Runs a helper command in the scenario directory (or `cwd` under it), e.g. to build a .gch. */
  | { readonly run: readonly string[]; readonly cwd?: string }
  | { readonly sleep: number }
  | { readonly daemon: number }
  | ((ctx: ScenarioContext) => void);

export type Changes = Change | readonly Change[];

export interface Step {
  readonly change: Changes;
  /** The outcome of the first kiln call after the change. */
  readonly expect: Expect;
  /** The outcome of the call after that; default: hit after a hit or miss, else the same as `expect`. */
  readonly expectWarm?: Expect;
}

export interface Scenario {
  /** Unique within its test file; also names the scenario's directory. */
  readonly name: string;
  readonly compiler: string;
  readonly args: readonly string[];
  readonly files: Readonly<Record<string, FileSpec>>;
  readonly env?: EnvPatch;
  readonly cwd?: string;
  /** Runs both compiles under this umask (through `sh -c 'umask …; exec …'`). */
  readonly umask?: number;
  readonly config?: Config;
  /** Applied after the files are written, before the first compile. */
  readonly setup?: Changes;
  /** 'uncached': kiln must refuse the starting command too. Default: cacheable (miss, then hit). */
  readonly initial?: 'cacheable' | 'uncached';
  /**
   * The second call's outcome when it is not a hit: a file whose output changes with the clock
   * (`__TIME__`) is never found in direct mode, and depend mode stores nothing for it.
   */
  readonly initialWarm?: Expect;
  readonly change?: Changes;
  readonly expect?: Expect;
  readonly expectWarm?: Expect;
  /** Further changes, each applied to the state the previous one left (the cache keeps it all). */
  readonly next?: readonly Step[];
  /** Tools the scenario needs (test/helpers/prereq.ts `have()`: skipped, or an error under CI=true). */
  readonly needs?: readonly string[];
  /** A capability that is optional even on CI (e.g. multilib): the scenario is skipped without it. */
  readonly when?: () => boolean;
  /**
   * Every scenario's kiln calls carry its own salt in the key (KILN_EXTRAFILES), so that two
   * scenarios with the same tree never hit each other's entries. Scenarios that give the same
   * `salt` share entries.
   */
  readonly salt?: string;
}

/** The outcomes acceptable under `config`. */
export function expected(e: Expect, config: Config): readonly Outcome[] {
  if (typeof e === 'string') return [e];
  if (Array.isArray(e)) return e as readonly Outcome[];
  const per = (e as Readonly<Partial<Record<Config, Outcome | readonly Outcome[]>>>)[config];
  if (per === undefined) throw new Error(`scenario error: no outcome for config ${config}`);
  return typeof per === 'string' ? [per] : per;
}

/** The scenario once per config, the config in its name. */
export function acrossConfigs(s: Scenario, configs: readonly Config[] = ALL_CONFIGS): Scenario[] {
  return configs.map((config) => ({ ...s, name: `${s.name} [${config}]`, config }));
}

/** The steps of a scenario in order: `change`/`expect` first, then `next`. */
export function stepsOf(s: Scenario): Step[] {
  const steps: Step[] = [];
  if (s.change !== undefined) {
    if (s.expect === undefined) throw new Error(`scenario "${s.name}": a change needs an expect`);
    steps.push({ change: s.change, expect: s.expect, expectWarm: s.expectWarm });
  }
  steps.push(...(s.next ?? []));
  return steps;
}
