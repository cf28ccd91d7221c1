/**
 * Distributed Rust: `RUSTC_WRAPPER=kiln cargo build` of a real project (regex, serde with derive,
 * serde_json, from Debian's crates, offline) through a loopback cluster — a scheduler and a
 * bubblewrap worker with the rustup resolver, which finds this machine's installed rustup toolchain
 * by commit. Library crates compile on the worker; proc-macros and build scripts stay local; the
 * rlibs and rmeta are byte-identical to a plain local `cargo build`. A worker whose rustup has no
 * such toolchain (and may not install it) sends every crate back to local compiles, counted; one
 * that may install it does so, for real, from a rustup distribution tree served on 127.0.0.1
 * (test/helpers/rustup-dist.ts), and then compiles every crate.
 *
 * The registry is a copy of Debian's under the test's directory, where a user's ~/.cargo registry
 * would be: crates under /usr/share/cargo/registry share no directory with a build in /tmp and are
 * kept local (they are counted as such in the last case).
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { hostTriple } from '@kiln/plugins';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  cargoEnv,
  DEBIAN_REGISTRY,
  depsArtifacts,
  offlineCargoConfig,
  vendorRegistry,
} from './helpers/cargo.js';
import { have } from './helpers/prereq.js';
import { ResolverCluster, sum } from './helpers/resolver-cluster.js';
import { serveRustupDist } from './helpers/rustup-dist.js';

const CRATES = ['regex-1.7.1', 'serde-1.0.152', 'serde_derive-1.0.152', 'serde_json-1.0.87'];
const haveAll =
  have('bwrap') &&
  have('cargo') &&
  have('rustup') &&
  CRATES.every((c) => fs.existsSync(path.join(DEBIAN_REGISTRY, c)));
if (process.env.CI === 'true' && !haveAll)
  throw new Error('CI=true: bwrap, rustup, cargo and librust-{regex,serde,serde-json}-dev are required');

const RUSTUP = spawnSync('sh', ['-c', 'command -v rustup'], { encoding: 'utf8' }).stdout.trim();
const RUSTUP_HOME = process.env.RUSTUP_HOME ?? path.join(os.homedir(), '.rustup');
const RUSTC = RUSTUP ? spawnSync(RUSTUP, ['which', 'rustc'], { encoding: 'utf8' }).stdout.trim() : '';
const HOST = hostTriple();

/** A binary crate using regex, serde (derive) and serde_json. */
function writeProject(dir: string, registry: string): string {
  fs.mkdirSync(path.join(dir, 'src'), { recursive: true });
  fs.writeFileSync(
    path.join(dir, 'Cargo.toml'),
    `[package]
name = "app"
version = "0.1.0"
edition = "2021"

[dependencies]
regex = "1"
serde = { version = "1", features = ["derive"] }
serde_json = "1"
`,
  );
  fs.writeFileSync(
    path.join(dir, 'src', 'main.rs'),
    `use serde::{Deserialize, Serialize};
#[derive(Serialize, Deserialize, Debug)]
struct Point { x: i32, y: i32 }
fn main() {
    let re = regex::Regex::new(r"(\\d+),(\\d+)").unwrap();
    let c = re.captures("12,34").unwrap();
    let p = Point { x: c[1].parse().unwrap(), y: c[2].parse().unwrap() };
    let text = serde_json::to_string(&p).unwrap();
    let back: Point = serde_json::from_str(&text).unwrap();
    println!("{} {}", text, back.x + back.y);
}
`,
  );
  offlineCargoConfig(dir, registry);
  return dir;
}

describe.skipIf(!haveAll)('distributed rustc through a loopback cluster', () => {
  const cluster = new ResolverCluster();
  let project: string;
  let env: NodeJS.ProcessEnv;
  /** The plain local build's libraries, by file name. */
  let local: Map<string, Buffer>;

  const cargoBuild = (extra: NodeJS.ProcessEnv = {}) => {
    const r = spawnSync('cargo', ['build', '-j2'], {
      cwd: project,
      env: { ...env, ...extra },
      encoding: 'utf8',
      timeout: 600_000,
    });
    expect(r.status, `${r.stderr}\n${cluster.sb.log().slice(-4000)}`).toBe(0);
    const run = spawnSync(path.join(project, 'target', 'debug', 'app'), { encoding: 'utf8' });
    expect(run.stdout.trim()).toBe('{"x":12,"y":34} 46');
  };

  beforeAll(async () => {
    const registry = vendorRegistry(cluster.sb.dir);
    project = writeProject(path.join(cluster.sb.work, 'app'), registry);
    env = { ...cluster.sb.env, ...cargoEnv(cluster.sb.dir), CARGO_INCREMENTAL: '0' };
    // The reference: a plain cargo build at the same paths (paths end up in debug info).
    const plain = spawnSync('cargo', ['build', '-j2'], {
      cwd: project,
      env,
      encoding: 'utf8',
      timeout: 600_000,
    });
    expect(plain.status, plain.stderr).toBe(0);
    local = depsArtifacts(path.join(project, 'target'));
    fs.rmSync(path.join(project, 'target'), { recursive: true });
    env = { ...env, RUSTC_WRAPPER: cluster.sb.client };
    await cluster.start(
      `resolvers = ["rustup"]\n[resolver_config.rustup]\nrustup = "${RUSTUP}"\nrustup_home = "${RUSTUP_HOME}"\n`,
    );
  }, 900_000);
  afterAll(() => cluster.stop());

  it('compiles every library crate on the worker; rlibs and rmeta byte-identical to a local build', () => {
    cluster.useClientConfig('resolvers = ["rustup"]');
    cargoBuild();
    const ours = depsArtifacts(path.join(project, 'target'));
    expect([...ours.keys()]).toEqual([...local.keys()]);
    const differ = [...local].filter(([name, data]) => !ours.get(name)!.equals(data)).map(([n]) => n);
    expect(differ).toEqual([]);
    // Library crates: one .rlib each (proc-macros make a .so and stay local).
    const libraries = [...local.keys()].filter((n) => n.endsWith('.rlib')).length;
    const procMacros = [...local.keys()].filter((n) => n.endsWith('.so')).length;
    expect(libraries).toBe(12); // regex, regex-syntax, aho-corasick, memchr, serde, serde_json, itoa, ryu, syn, quote, proc-macro2, unicode-ident
    expect(procMacros).toBe(1); // serde_derive
    const s = cluster.stats();
    const distributed = sum(s.distCompiles);
    console.log(
      `distributed ${distributed} of ${libraries} library crates; local: ${JSON.stringify(s.distLocal)}`,
    );
    expect(distributed / libraries).toBeGreaterThanOrEqual(0.8);
    expect(distributed).toBe(libraries);
    expect(s.distLocal).toEqual({ 'crate type proc-macro (compiled locally)': 1 });
    expect(s.distErrors).toEqual({});
    expect(s.misses).toBe(libraries + procMacros);
  });

  it('a client without the rustup resolver keeps every crate local before any dep-info run, counted', () => {
    cluster.useClientConfig('');
    fs.rmSync(path.join(project, 'target'), { recursive: true, force: true });
    const logBefore = cluster.sb.log().length;
    cargoBuild();
    const s = cluster.stats();
    expect(sum(s.distCompiles)).toBe(0);
    const { 'crate type proc-macro (compiled locally)': procMacro, ...why } = s.distLocal;
    expect(procMacro).toBe(1);
    // The built-in archive resolver does not package rustc: "being packaged" while it finds that out.
    expect(
      Object.keys(why).filter((k) => !/^toolchain (being packaged|cannot be packaged)$/.test(k)),
    ).toEqual([]);
    expect(sum(why)).toBe(12);
    expect(cluster.sb.log().slice(logBefore)).not.toContain('dep-info run');
    const ours = depsArtifacts(path.join(project, 'target'));
    for (const [name, data] of local) expect(ours.get(name)?.equals(data), name).toBe(true);
  });

  it('a worker whose rustup home is empty installs the toolchain (install = true) from a mirror, then compiles every library crate', {
    timeout: 600_000,
  }, async () => {
    // The mirror is a rustup distribution tree built from this machine's toolchain, on 127.0.0.1.
    const dist = await serveRustupDist(
      path.dirname(path.dirname(RUSTC)),
      path.join(cluster.sb.dir, 'mirror'),
    );
    const fresh = new ResolverCluster();
    try {
      const home = path.join(fresh.sb.dir, 'rustup-home');
      fs.mkdirSync(home);
      await fresh.start(
        `resolvers = ["rustup"]\n[resolver_config.rustup]\nrustup = "${RUSTUP}"\nrustup_home = "${home}"\ninstall = true\ndist_server = "${dist.url}"\n`,
      );
      fresh.useClientConfig('resolvers = ["rustup"]');
      fs.rmSync(path.join(project, 'target'), { recursive: true, force: true });
      // Asynchronously: the mirror answers from this process.
      const r = await fresh.sb.runAsync(['cargo', 'build', '-j2'], project, {
        ...env,
        ...fresh.sb.env,
        ...cargoEnv(cluster.sb.dir),
        RUSTC_WRAPPER: fresh.sb.client,
        CARGO_INCREMENTAL: '0',
      });
      expect(r.status, r.stderr).toBe(0);
      const ours = depsArtifacts(path.join(project, 'target'));
      for (const [name, data] of local) expect(ours.get(name)?.equals(data), name).toBe(true);
      const s = fresh.stats();
      expect(sum(s.distCompiles)).toBe(12);
      expect(s.distErrors).toEqual({});
      // Installed once, by the first job; the others waited for it or found it.
      expect(dist.served.filter((p) => p.endsWith('.tar.gz')).length).toBe(3);
      expect(fs.readdirSync(path.join(home, 'toolchains'))).toEqual([`${dist.release}-${HOST}`]);
    } finally {
      await fresh.stop();
      await dist.close();
    }
  });

  it('a worker whose rustup lacks the toolchain (install = false): every crate compiles locally, counted', {
    timeout: 600_000,
  }, async () => {
    // A second cluster's worker with an empty RUSTUP_HOME: no toolchain installed, none may be.
    const empty = new ResolverCluster();
    try {
      const home = path.join(empty.sb.dir, 'rustup-home');
      fs.mkdirSync(home);
      await empty.start(
        `resolvers = ["rustup"]\n[resolver_config.rustup]\nrustup = "${RUSTUP}"\nrustup_home = "${home}"\n`,
      );
      empty.useClientConfig('resolvers = ["rustup"]');
      fs.rmSync(path.join(project, 'target'), { recursive: true, force: true });
      const before = Date.now();
      const r = spawnSync('cargo', ['build', '-j2'], {
        cwd: project,
        env: {
          ...env,
          ...empty.sb.env,
          ...cargoEnv(cluster.sb.dir),
          RUSTC_WRAPPER: empty.sb.client,
          CARGO_INCREMENTAL: '0',
        },
        encoding: 'utf8',
        timeout: 600_000,
      });
      expect(r.status, r.stderr).toBe(0);
      expect(Date.now() - before).toBeLessThan(300_000);
      const ours = depsArtifacts(path.join(project, 'target'));
      for (const [name, data] of local) expect(ours.get(name)?.equals(data), name).toBe(true);
      const s = empty.stats();
      expect(sum(s.distCompiles)).toBe(0);
      // Each library crate is refused by the worker (422), with no other worker to try.
      expect(s.distErrors).toEqual({ 'toolchain unavailable on worker': 12 });
      expect((s as unknown as { distRetries: Record<string, number> }).distRetries).toEqual({
        retried: 12,
        'compiled locally': 12,
      });
      // The worker's answer says what to do, and the daemon's log shows it.
      expect(empty.sb.log()).toContain('run rustup toolchain install');
    } finally {
      await empty.stop();
    }
  });
});
