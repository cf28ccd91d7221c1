/**
 * Rust differential: for each scenario (test/differential/rust-scenarios.ts), plain `cargo build`
 * and `RUSTC_WRAPPER=kiln cargo build` of the start state and of the state after one change must
 * leave byte-identical libraries, metadata and dep-info in target/, and kiln's Rust counters must
 * move exactly as the scenario says. Plain and kiln builds use the same target directory (paths end
 * up in the artifacts); one daemon serves the whole file, so scenarios run one after another.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { slug } from './differential/runner.js';
import { type Change, SCENARIOS, type Scenario } from './differential/rust-scenarios.js';
import { cargoEnv, DEBIAN_REGISTRY, offlineCargoConfig } from './helpers/cargo.js';
import { KilnSandbox, type LanguageCounts } from './helpers/kiln.js';
import { have } from './helpers/prereq.js';

const haveRust = have('cargo') && have('rustc') && have('cc') && have('ar');
if (process.env.CI === 'true' && !fs.existsSync(path.join(DEBIAN_REGISTRY, 'itoa-1.0.1')))
  throw new Error('CI=true: librust-itoa-dev is required');

const sleep = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
/** kiln does not store a compile whose sources changed just before it: let written files age. */
const settle = () => sleep(100);

type Env = Record<string, string | undefined>;
const QUERY = 'query (-vV, --print, --help)';

/** The artifacts kiln must reproduce: what rustc writes to <profile dir>/deps for library crates. */
function snapshot(profileDirs: readonly string[]): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  for (const profileDir of profileDirs) {
    const dir = path.join(profileDir, 'deps');
    if (!fs.existsSync(dir)) continue;
    for (const name of fs.readdirSync(dir).sort()) {
      if (/\.(rlib|rmeta|so|a|d)$/.test(name)) out.set(name, fs.readFileSync(path.join(dir, name)));
    }
  }
  return out;
}

/** Build scripts compiled (each is a bin crate: kiln counts it as uncached). */
function buildScripts(profileDir: string): number {
  const dir = path.join(profileDir, 'build');
  if (!fs.existsSync(dir)) return 0;
  return fs.readdirSync(dir).filter((d) => fs.existsSync(path.join(dir, d, 'build-script-build'))).length;
}

function expectSameBytes(ours: Map<string, Buffer>, plain: Map<string, Buffer>, when: string): void {
  expect([...ours.keys()], when).toEqual([...plain.keys()]);
  const differing = [...plain].filter(([name, data]) => !ours.get(name)?.equals(data)).map(([n]) => n);
  expect(differing, `${when}: differs from plain cargo`).toEqual([]);
}

function applyChange(root: string, change: Change): void {
  for (const [rel, text] of Object.entries(change.write ?? {})) fs.writeFileSync(path.join(root, rel), text);
  for (const [rel, text] of Object.entries(change.append ?? {}))
    fs.appendFileSync(path.join(root, rel), text);
  for (const [rel, from, to] of change.replace ?? []) {
    const file = path.join(root, rel);
    const text = fs.readFileSync(file, 'utf8');
    if (!text.includes(from)) throw new Error(`${rel} has no ${JSON.stringify(from)}`);
    fs.writeFileSync(file, text.replace(from, to));
  }
  for (const rel of change.touch ?? []) {
    const file = path.join(root, rel);
    fs.writeFileSync(file, fs.readFileSync(file));
  }
}

describe.skipIf(!haveRust)('Rust differential: plain cargo vs RUSTC_WRAPPER=kiln', () => {
  let sb: KilnSandbox;
  let baseEnv: Env;
  let host: string;

  beforeAll(() => {
    sb = new KilnSandbox('native');
    const { RUSTC_WRAPPER: _w, RUSTFLAGS: _f, CARGO_TARGET_DIR: _t, ...inherited } = sb.env;
    baseEnv = { ...inherited, ...cargoEnv(sb.dir), CARGO_INCREMENTAL: '0' };
    host = /^host: (\S+)$/m.exec(spawnSync('rustc', ['-vV'], { encoding: 'utf8' }).stdout)![1]!;
  });
  afterAll(() => sb?.dispose());

  const counts = (): LanguageCounts & { errors: number } => {
    const { stats } = sb.stats();
    const rust = stats.languages.Rust ?? { hits: 0, misses: 0, failed: 0, uncached: 0 };
    return {
      ...rust,
      // cargo's own `rustc -vV` and `--print` queries (asked again after each clean) are not crates.
      uncached: rust.uncached - (stats.nonCacheable[QUERY] ?? 0),
      errors: Object.values(stats.errors).reduce((a, b) => a + b, 0) + stats.compileFailed,
    };
  };

  interface BuildOptions {
    readonly release: boolean;
    readonly check: boolean;
    readonly args: readonly string[];
  }

  /** One `cargo build` (plain or through kiln) from clean; returns the artifacts and how kiln's counters moved. */
  function build(root: string, env: Env, opts: BuildOptions, viaKiln: boolean) {
    const resolved: Env = {};
    for (const [k, v] of Object.entries(env)) resolved[k] = v?.replaceAll('{root}', root);
    const { RUSTC_WRAPPER: _, ...plainEnv } = resolved;
    const cargoEnvNow = (viaKiln ? { ...plainEnv, RUSTC_WRAPPER: sb.client } : plainEnv) as NodeJS.ProcessEnv;
    const args = opts.args.map((a) => a.replaceAll('{host}', host));
    const targetDir = resolved.CARGO_TARGET_DIR ?? path.join(root, 'target');
    // A clean build; cargo's record of rustc's answers to -vV and --print stays (saves queries).
    for (const entry of fs.existsSync(targetDir) ? fs.readdirSync(targetDir) : []) {
      if (entry !== '.rustc_info.json') fs.rmSync(path.join(targetDir, entry), { recursive: true });
    }
    const before = counts();
    const command = [opts.check ? 'check' : 'build', '-q', ...(opts.release ? ['--release'] : []), ...args];
    const r = spawnSync('cargo', command, {
      cwd: root,
      env: cargoEnvNow,
      encoding: 'utf8',
      timeout: 120_000,
    });
    if (r.status !== 0)
      throw new Error(`cargo ${command.join(' ')} failed:\n${r.stderr}\n${sb.log().slice(-2000)}`);
    const after = counts();
    const profile = opts.release ? 'release' : 'debug';
    // With --target, the target's crates go to target/<triple>/, proc-macros and build scripts stay.
    const target = args.includes('--target') ? args[args.indexOf('--target') + 1] : undefined;
    const profileDirs = [path.join(targetDir, profile)];
    if (target) profileDirs.push(path.join(targetDir, target, profile));
    return {
      artifacts: snapshot(profileDirs),
      scripts: buildScripts(profileDirs[0]!),
      delta: {
        hits: after.hits - before.hits,
        misses: after.misses - before.misses,
        uncached: after.uncached - before.uncached,
        errors: after.errors - before.errors,
      },
    };
  }

  function run(s: Scenario): void {
    let root = path.join(sb.work, s.dir ?? slug(s.name, 40));
    for (const [rel, text] of Object.entries(s.files)) {
      fs.mkdirSync(path.dirname(path.join(root, rel)), { recursive: true });
      fs.writeFileSync(path.join(root, rel), text);
    }
    offlineCargoConfig(root);
    settle();
    const crates = Object.keys(s.after).length;
    const startEnv: Env = { ...baseEnv, ...s.env };
    const opts: BuildOptions = {
      release: s.release ?? false,
      check: s.check ?? false,
      args: s.cargoArgs ?? [],
    };

    const plain = build(root, startEnv, opts, false);
    const cold = build(root, startEnv, opts, true);
    expectSameBytes(cold.artifacts, plain.artifacts, 'start state, cold');
    // Registry crates may already be cached by an earlier scenario.
    expect(cold.delta.hits + cold.delta.misses, 'cold: every library crate compiled or hit').toBe(crates);
    const warm = build(root, startEnv, opts, true);
    expectSameBytes(warm.artifacts, plain.artifacts, 'start state, warm');
    expect(warm.delta, 'warm: every library crate hits').toEqual({
      hits: crates,
      misses: 0,
      uncached: warm.scripts,
      errors: 0,
    });

    applyChange(root, s.change);
    if (s.change.moveTo) {
      const moved = path.join(sb.work, s.change.moveTo);
      fs.renameSync(root, moved);
      root = moved;
    }
    settle();
    const endEnv: Env = { ...startEnv, ...s.change.env };
    const endOpts = { ...opts, args: s.change.cargoArgs ?? opts.args };
    const plainAfter = build(root, endEnv, endOpts, false);
    const ours = build(root, endEnv, endOpts, true);
    for (const crate of s.unreproducible ?? []) {
      for (const artifacts of [ours.artifacts, plainAfter.artifacts]) {
        for (const name of artifacts.keys())
          if (name.replace(/^lib/, '').startsWith(`${crate}-`)) artifacts.delete(name);
      }
    }
    expectSameBytes(ours.artifacts, plainAfter.artifacts, 'after the change');
    const outcomes = Object.values(s.after);
    const n = (o: string) => outcomes.filter((x) => x === o).length;
    expect(ours.delta, `after the change: ${JSON.stringify(s.after)}`).toEqual({
      hits: n('hit'),
      misses: n('miss'),
      uncached: n('uncached') + ours.scripts,
      errors: 0,
    });
  }

  for (const s of SCENARIOS) {
    it(s.name, () => {
      if (!s.knownGap) return run(s);
      expect(() => run(s), s.knownGap).toThrow(/after the change: differs from plain cargo/);
    });
  }
});
