/**
 * The differential engine: runs each scenario's compile plainly and through kiln in the same
 * directory, and demands the same bytes (every file created or changed, stdout, stderr, exit
 * status) and the expected outcome from the daemon's stats.
 *
 * Per scenario, in a directory of its own: the starting tree is compiled plainly (then its outputs
 * are removed), through kiln cold and warm; then each change is applied and the same three compiles
 * run again. One daemon per config per test file; scenarios run one after another, so each call's
 * stats delta is its own.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, it } from 'vitest';
import type { KilnSandbox } from '../helpers/kiln.js';
import { have } from '../helpers/prereq.js';
import { outcomeOf, readStats, SandboxPool } from './daemons.js';
import {
  type Change,
  type Changes,
  CONFIGS,
  type CommandState,
  type Config,
  expected,
  type FileSpec,
  type Outcome,
  type Scenario,
  type ScenarioContext,
  stepsOf,
} from './scenario.js';
import {
  compareDiffs,
  describeBytes,
  diffTrees,
  restoreTree,
  scanTree,
  type Tree,
  type TreeDiff,
} from './tree.js';

/** kiln keeps files changed within 50 ms of a compile out of direct mode; wait a little longer. */
const SETTLE_MS = 80;
/** A daemon adds its counters to the shared stats.json once a second. */
const FLUSH_MS = 1100;

const tools = new Map<string, boolean>();
const haveCached = (tool: string) => tools.get(tool) ?? tools.set(tool, have(tool)).get(tool)!;

const sleep = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

interface CompileResult {
  readonly status: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: Buffer;
  readonly stderr: Buffer;
  readonly diff: TreeDiff;
}

function compareRuns(want: CompileResult, got: CompileResult): string[] {
  const out: string[] = [];
  if (want.status !== got.status || want.signal !== got.signal)
    out.push(`exit status: plain ${want.status ?? want.signal}, kiln ${got.status ?? got.signal}`);
  if (!want.stdout.equals(got.stdout)) out.push(describeBytes('stdout', want.stdout, got.stdout));
  if (!want.stderr.equals(got.stderr)) out.push(describeBytes('stderr', want.stderr, got.stderr));
  out.push(...compareDiffs(want.diff, got.diff));
  return out;
}

const firstLine = (b: Buffer) => b.toString('latin1').split('\n')[0] ?? '';

/** One scenario's directory, command and timing. */
class ScenarioRun implements ScenarioContext {
  readonly state: CommandState;
  private lastChange = 0;
  private tree: Tree | undefined;

  constructor(
    private readonly pool: SandboxPool,
    scenario: Scenario,
    readonly config: Config,
    readonly dir: string,
  ) {
    this.state = {
      compiler: scenario.compiler,
      args: [...scenario.args],
      env: { ...scenario.env },
      cwd: scenario.cwd ?? '.',
      umask: scenario.umask,
      daemon: 0,
    };
  }

  private get sb(): KilnSandbox {
    return this.pool.get(this.config, this.state.daemon);
  }

  expand(s: string): string {
    return s.replaceAll('{dir}', this.dir).replaceAll('{PATH}', this.sb.env.PATH ?? '/usr/bin:/bin');
  }

  path(rel: string): string {
    return path.join(this.dir, rel);
  }

  touched(): void {
    this.lastChange = Date.now();
  }

  write(rel: string, content: string | Buffer): void {
    const file = this.path(rel);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, typeof content === 'string' ? this.expand(content) : content);
    this.touched();
  }

  writeSpec(rel: string, spec: FileSpec): void {
    if (typeof spec === 'string' || Buffer.isBuffer(spec)) this.write(rel, spec);
    else if ('symlink' in spec) {
      fs.mkdirSync(path.dirname(this.path(rel)), { recursive: true });
      fs.symlinkSync(this.expand(spec.symlink), this.path(rel));
      this.touched();
    } else {
      this.write(rel, spec.content);
      if (spec.mode !== undefined) fs.chmodSync(this.path(rel), spec.mode);
      if (spec.mtime !== undefined) fs.utimesSync(this.path(rel), spec.mtime, spec.mtime);
    }
  }

  apply(changes: Changes): void {
    for (const c of (Array.isArray(changes) ? changes : [changes]) as Change[]) this.applyOne(c);
  }

  private applyOne(c: Change): void {
    const s = this.state;
    if (typeof c === 'function') {
      c(this);
      this.touched();
    } else if ('write' in c) {
      const old = c.keepTimes ? fs.statSync(this.path(c.write)) : undefined;
      this.write(c.write, c.content);
      if (old) fs.utimesSync(this.path(c.write), old.atime, old.mtime);
    } else if ('append' in c) {
      fs.appendFileSync(this.path(c.append), this.expand(c.content));
      this.touched();
    } else if ('edit' in c) {
      const old = fs.statSync(this.path(c.edit));
      const text = fs.readFileSync(this.path(c.edit), 'latin1');
      if (!text.includes(c.from)) throw new Error(`scenario error: ${c.edit} does not contain ${c.from}`);
      this.write(c.edit, Buffer.from(text.replace(c.from, this.expand(c.to)), 'latin1'));
      if (c.keepTimes) fs.utimesSync(this.path(c.edit), old.atime, old.mtime);
    } else if ('remove' in c) {
      fs.rmSync(this.path(c.remove), { recursive: true });
      this.touched();
    } else if ('symlink' in c) {
      fs.rmSync(this.path(c.symlink), { force: true });
      this.writeSpec(c.symlink, { symlink: c.target });
    } else if ('chmod' in c) {
      fs.chmodSync(this.path(c.chmod), c.mode);
      this.touched();
    } else if ('touch' in c) {
      const t = c.mtime ?? Date.now() / 1000 + 10;
      fs.utimesSync(this.path(c.touch), t, t);
      this.touched();
    } else if ('args' in c) s.args = c.args.map((a) => a);
    else if ('addArgs' in c) s.args = c.atEnd ? [...s.args, ...c.addArgs] : [...c.addArgs, ...s.args];
    else if ('dropArgs' in c) {
      for (const a of c.dropArgs) {
        const i = s.args.indexOf(a);
        if (i < 0) throw new Error(`scenario error: no argument ${a} to drop`);
        s.args.splice(i, 1);
      }
    } else if ('replaceArg' in c) {
      const i = s.args.indexOf(c.replaceArg);
      if (i < 0) throw new Error(`scenario error: no argument ${c.replaceArg} to replace`);
      s.args.splice(i, 1, ...(typeof c.with === 'string' ? [c.with] : c.with));
    } else if ('env' in c) Object.assign(s.env, c.env);
    else if ('run' in c) {
      const argv = c.run.map((a) => this.expand(a));
      const r = spawnSync(argv[0]!, argv.slice(1), {
        cwd: path.join(this.dir, c.cwd ?? '.'),
        env: this.env('plain'),
        encoding: 'utf8',
      });
      if (r.status !== 0)
        throw new Error(`scenario error: ${argv.join(' ')} failed: ${r.stderr}${r.error ?? ''}`);
      this.touched();
    } else if ('cwd' in c) s.cwd = c.cwd;
    else if ('compiler' in c) s.compiler = c.compiler;
    else if ('umask' in c) s.umask = c.umask;
    else if ('sleep' in c) sleep(c.sleep);
    else if ('daemon' in c) {
      // The daemon switched from must have flushed its counters into the shared stats first.
      sleep(FLUSH_MS);
      s.daemon = c.daemon;
      this.pool.get(this.config, c.daemon);
    }
  }

  private env(kind: 'plain' | 'kiln'): NodeJS.ProcessEnv {
    const env: NodeJS.ProcessEnv = { ...this.sb.env };
    for (const [k, v] of Object.entries(this.state.env)) {
      if (v === undefined) delete env[k];
      else env[k] = this.expand(v);
    }
    // As a shell would after `cd`: gcc and clang take PWD for the directory they record.
    env.PWD = path.join(this.dir, this.state.cwd);
    if (kind === 'plain') {
      for (const k of Object.keys(env)) if (k.startsWith('KILN_')) delete env[k];
    } else env.KILN_EXTRAFILES = `${this.dir}.salt`;
    return env;
  }

  /** Runs the compile (plainly or through kiln), records what it did, and puts the tree back. */
  compile(kind: 'plain' | 'kiln'): CompileResult {
    const { state } = this;
    let argv = [this.expand(state.compiler), ...state.args.map((a) => this.expand(a))];
    if (kind === 'kiln') {
      argv = [this.sb.client, ...argv];
      const wait = this.lastChange + SETTLE_MS - Date.now();
      if (wait > 0) sleep(wait);
    }
    if (state.umask !== undefined)
      argv = ['/bin/sh', '-c', `umask ${state.umask.toString(8).padStart(3, '0')}; exec "$@"`, 'sh', ...argv];
    const before = scanTree(this.dir, this.tree);
    const r = spawnSync(argv[0]!, argv.slice(1), {
      cwd: path.join(this.dir, state.cwd),
      env: this.env(kind),
      timeout: 60_000,
      maxBuffer: 64 * 1024 * 1024,
    });
    if (r.error) throw r.error;
    const after = scanTree(this.dir, before);
    const diff = diffTrees(before, after);
    restoreTree(this.dir, before, diff);
    this.tree = before;
    return { status: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr, diff };
  }

  /**
   * Plain compile, then kiln twice, each call's outcome checked against what `expect` asks given
   * the plain result. Returns one line per call that went wrong, with every difference it showed.
   */
  async check(label: string, expect: (plain: CompileResult) => (readonly Outcome[])[]): Promise<string[]> {
    const plain = this.compile('plain');
    const [cold = [], warm = []] = expect(plain);
    const failures: string[] = [];
    for (const [call, want] of [
      ['kiln', cold],
      ['kiln again', warm],
    ] as const) {
      const sb = this.sb;
      const before = await readStats(sb);
      const got = this.compile('kiln');
      const observed = outcomeOf(before, await readStats(sb));
      const problems = compareRuns(plain, got);
      if (!(want as readonly string[]).includes(observed.kind))
        problems.unshift(`expected ${want.join(' or ')}, got ${observed.text}`);
      if (problems.length === 0) continue;
      const again = compareRuns(plain, this.compile('plain'));
      if (again.length) problems.push(`NOTE: two plain compiles differ too (${again[0]})`);
      const status = plain.status ?? plain.signal;
      const plainSays = `plain exit ${status}${plain.status ? `: ${firstLine(plain.stderr)}` : ''}`;
      failures.push(`${label}, ${call}: ${problems.join('; ')} [${plainSays}]`);
    }
    return failures;
  }
}

/** A short account of a change for failure messages: "edit h.h", "replaceArg -DK=1", "function". */
function describeChanges(changes: Changes): string {
  const one = (c: Change) => {
    if (typeof c === 'function') return 'function';
    const [key, value] = Object.entries(c)[0]!;
    return `${key} ${typeof value === 'string' ? value : JSON.stringify(value)}`;
  };
  return (Array.isArray(changes) ? (changes as Change[]) : [changes as Change]).map(one).join(', ');
}

/** A scenario name as a directory name. */
export const slug = (name: string, max = 60) =>
  name
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-|-$/g, '')
    .slice(0, max);

/** Runs one scenario in its own directory under the sandbox of its config. */
async function runScenario(pool: SandboxPool, s: Scenario, index: number): Promise<void> {
  const config = s.config ?? 'default';
  const dir = path.join(pool.work(config), `${String(index).padStart(3, '0')}-${slug(s.name)}`);
  fs.mkdirSync(dir);
  fs.writeFileSync(`${dir}.salt`, s.salt ?? s.name);
  const run = new ScenarioRun(pool, s, config, dir);
  for (const [rel, spec] of Object.entries(s.files)) run.writeSpec(rel, spec);
  if (s.setup) run.apply(s.setup);

  // Every step runs even after a failure (each compile starts from the same tree), so that an
  // outcome the policy does not expect is followed by what kiln then got wrong, if anything.
  const failures = await run.check('start', (plain) => {
    if (s.initial === 'uncached') return [['uncached'], ['uncached']];
    const warm = s.initialWarm === undefined ? ['hit' as const] : expected(s.initialWarm, config);
    return plain.status === 0 ? [['miss'], warm] : [['failed'], ['failed']];
  });
  for (const [i, step] of stepsOf(s).entries()) {
    run.apply(step.change);
    const want = expected(step.expect, config);
    const warm =
      step.expectWarm !== undefined
        ? expected(step.expectWarm, config)
        : [...new Set(want.map((o) => (o === 'miss' ? 'hit' : o)))];
    failures.push(
      ...(await run.check(`after change ${i + 1} (${describeChanges(step.change)})`, () => [want, warm])),
    );
  }
  if (failures.length) throw new Error(failures.join('\n'));
}

/**
 * Defines one vitest `describe` with an `it` per scenario. Scenarios run in order, grouped by
 * config (one daemon each, stopped after the file).
 */
export function differentialSuite(title: string, scenarios: readonly Scenario[]): void {
  const names = new Set<string>();
  for (const s of scenarios) {
    if (names.has(s.name)) throw new Error(`two scenarios are named "${s.name}"`);
    names.add(s.name);
  }
  const order = Object.keys(CONFIGS);
  const ordered = [...scenarios].sort(
    (a, b) => order.indexOf(a.config ?? 'default') - order.indexOf(b.config ?? 'default'),
  );
  describe(title, () => {
    const pool = new SandboxPool();
    afterAll(() => pool.dispose());
    for (const [i, s] of ordered.entries()) {
      const needed = [...(s.needs ?? []), ...(s.compiler.includes('/') ? [] : [s.compiler])];
      const missing = needed.filter((tool) => !haveCached(tool));
      const skip = missing.length > 0 || (s.when !== undefined && !s.when());
      (skip ? it.skip : it)(s.name, () => runScenario(pool, s, i), 60_000);
    }
  });
}
