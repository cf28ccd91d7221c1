/**
 * Real `cargo build`s through kiln (RUSTC_WRAPPER) with crates from Debian's registry
 * (librust-*-dev, offline): hits after `cargo clean`, byte-identical libraries, and a miss for
 * each change that must cause one — a build-script output that is include!d, an env!() variable,
 * a Cargo.toml feature, a changed proc-macro — plus a rustc that is not rustc and a non-UTF-8 path.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cargoEnv, DEBIAN_REGISTRY, depsArtifacts, offlineCargoConfig } from './helpers/cargo.js';
import { KilnSandbox } from './helpers/kiln.js';
import { have } from './helpers/prereq.js';

const haveRust = have('cargo') && have('rustc') && fs.existsSync(path.join(DEBIAN_REGISTRY, 'itoa-1.0.1'));
if (process.env.CI === 'true' && !haveRust)
  throw new Error('CI=true: cargo and librust-itoa-dev are required');

const sleep = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

/** A workspace: registry crates (itoa, libc with a build script), a build script that generates code, env!(), a feature, a proc-macro. */
function writeProject(sb: KilnSandbox, dir: string): string {
  const root = path.join(sb.work, dir);
  const put = (rel: string, text: string) => {
    fs.mkdirSync(path.dirname(path.join(root, rel)), { recursive: true });
    fs.writeFileSync(path.join(root, rel), text);
  };
  const pkg = (name: string, extra = '') =>
    `[package]\nname = "${name}"\nversion = "0.1.0"\nedition = "2021"\n${extra}`;
  put(
    'Cargo.toml',
    `${pkg('app')}
[dependencies]
itoa = "1"
libc = "0.2"
gen = { path = "gen" }
envy = { path = "envy" }
kcore = { path = "kcore" }

[workspace]
members = ["gen", "envy", "mac", "kcore"]
`,
  );
  put(
    'src/main.rs',
    `fn main() {
    println!("gen={} loud={} x={} answer={} pid={} width={}", gen::GENERATED, gen::LOUD, envy::X,
        kcore::ANSWER, unsafe { libc::getpid() } > 0, kcore::width(12345));
}
`,
  );
  put('gen/Cargo.toml', `${pkg('gen')}[features]\nloud = []\n`);
  put('gen/gen-input.txt', 'one\n');
  put(
    'gen/build.rs',
    `use std::{env, fs, path::Path};
fn main() {
    println!("cargo:rerun-if-changed=gen-input.txt");
    let text = fs::read_to_string("gen-input.txt").unwrap();
    let out = Path::new(&env::var("OUT_DIR").unwrap()).join("gen.rs");
    fs::write(out, format!("pub const GENERATED: &str = {:?};\\n", text.trim())).unwrap();
}
`,
  );
  put(
    'gen/src/lib.rs',
    `include!(concat!(env!("OUT_DIR"), "/gen.rs"));
#[cfg(feature = "loud")]
pub const LOUD: bool = true;
#[cfg(not(feature = "loud"))]
pub const LOUD: bool = false;
`,
  );
  put('envy/Cargo.toml', pkg('envy'));
  put(
    'envy/src/lib.rs',
    'pub const X: &str = env!("KILN_TEST_X");\npub fn noisy() { let unused_here = 1; }\n',
  );
  put('mac/Cargo.toml', `${pkg('mac')}[lib]\nproc-macro = true\n`);
  put(
    'mac/src/lib.rs',
    'use proc_macro::TokenStream;\n#[proc_macro]\npub fn answer(_: TokenStream) -> TokenStream { "42".parse().unwrap() }\n',
  );
  put('kcore/Cargo.toml', `${pkg('kcore')}[dependencies]\nmac = { path = "../mac" }\nitoa = "1"\n`);
  put(
    'kcore/src/lib.rs',
    'pub const ANSWER: u32 = mac::answer!();\npub fn width(n: u64) -> usize { itoa::Buffer::new().format(n).len() }\n',
  );
  offlineCargoConfig(root);
  sleep(100); // sources older than kiln's "changed during the compile" margin
  return root;
}

describe.skipIf(!haveRust)('cargo through RUSTC_WRAPPER=kiln', () => {
  let sb: KilnSandbox;
  let project: string;
  let env: NodeJS.ProcessEnv;

  const cargo = (args: string[], extra: NodeJS.ProcessEnv = {}, cwd = project) => {
    const r = spawnSync('cargo', args, {
      cwd,
      env: { ...env, ...extra },
      encoding: 'utf8',
      timeout: 300_000,
    });
    if (r.status !== 0)
      throw new Error(`cargo ${args.join(' ')} failed:\n${r.stderr}\n${sb.log().slice(-3000)}`);
    return r;
  };
  const runApp = () =>
    spawnSync(path.join(project, 'target', 'debug', 'app'), { encoding: 'utf8' }).stdout.trim();
  const rust = () => sb.languageStats('Rust');
  /** Runs `step`, returns how Rust hits and misses moved. */
  const delta = (step: () => void) => {
    const before = rust();
    step();
    const after = rust();
    return { hits: after.hits - before.hits, misses: after.misses - before.misses };
  };

  beforeAll(() => {
    sb = new KilnSandbox('native');
    const base = { ...sb.env, ...cargoEnv(sb.dir), CARGO_INCREMENTAL: '0', KILN_TEST_X: '1' };
    env = { ...base, RUSTC_WRAPPER: sb.client };
    project = writeProject(sb, 'app');
  });
  afterAll(() => sb?.dispose());

  it('caches every library crate: all hits after cargo clean, byte-identical to a plain build', () => {
    // The plain build runs in the same directory (paths end up in debug info), then moves aside.
    const { RUSTC_WRAPPER: _, ...plainEnv } = env;
    const p = spawnSync('cargo', ['build'], {
      cwd: project,
      env: plainEnv,
      encoding: 'utf8',
      timeout: 300_000,
    });
    expect(p.status, p.stderr).toBe(0);
    const theirs = depsArtifacts(path.join(project, 'target'));
    fs.rmSync(path.join(project, 'target'), { recursive: true });

    const cold = delta(() => cargo(['build']));
    // itoa, libc, gen, envy, mac (proc-macro), kcore; build scripts and the binary are not cached.
    expect(cold).toEqual({ hits: 0, misses: 6 });
    expect(runApp()).toBe('gen=one loud=false x=1 answer=42 pid=true width=5');

    cargo(['clean']);
    let warmStderr = '';
    const warm = delta(() => {
      warmStderr = cargo(['build']).stderr;
    });
    expect(warm).toEqual({ hits: 6, misses: 0 });
    expect(runApp()).toBe('gen=one loud=false x=1 answer=42 pid=true width=5');
    // The replayed JSON diagnostics reach cargo as they were first printed.
    expect(warmStderr).toMatch(/unused variable: `unused_here`/);

    const ours = depsArtifacts(path.join(project, 'target'));
    expect([...ours.keys()]).toEqual([...theirs.keys()]);
    expect(ours.size).toBeGreaterThanOrEqual(11); // 5 rlib + 5 rmeta + 1 proc-macro .so
    for (const [name, data] of theirs) expect(ours.get(name)!.equals(data), name).toBe(true);
    const stats = sb.stats().stats;
    expect(stats.nonCacheable['crate type bin links a final binary']).toBeGreaterThanOrEqual(3);
    expect(stats.errors).toEqual({});
  });

  it('reuses registry crates from another checkout (a different target dir)', () => {
    const other = writeProject(sb, 'other');
    const d = delta(() => cargo(['build'], {}, other));
    // itoa and libc come from the registry directory: same cwd and source paths, so they hit.
    expect(d.hits).toBeGreaterThanOrEqual(2);
    const out = spawnSync(path.join(other, 'target', 'debug', 'app'), { encoding: 'utf8' }).stdout.trim();
    expect(out).toBe('gen=one loud=false x=1 answer=42 pid=true width=5');
  });

  it('misses when a build script writes different code that a crate include!s', () => {
    fs.writeFileSync(path.join(project, 'gen', 'gen-input.txt'), 'two\n');
    sleep(100);
    expect(delta(() => cargo(['build']))).toEqual({ hits: 0, misses: 1 });
    expect(runApp()).toMatch(/^gen=two /);
  });

  it('misses when a variable read by env!() changes, and hits again when it changes back', () => {
    expect(delta(() => cargo(['build'], { KILN_TEST_X: '2' }))).toEqual({ hits: 0, misses: 1 });
    expect(runApp()).toMatch(/ x=2 /);
    expect(delta(() => cargo(['build'], { KILN_TEST_X: '1' }))).toEqual({ hits: 1, misses: 0 });
    expect(runApp()).toMatch(/ x=1 /);
  });

  it('misses when Cargo.toml turns on a feature', () => {
    const manifest = path.join(project, 'Cargo.toml');
    fs.writeFileSync(
      manifest,
      fs
        .readFileSync(manifest, 'utf8')
        .replace('gen = { path = "gen" }', 'gen = { path = "gen", features = ["loud"] }'),
    );
    sleep(100);
    expect(delta(() => cargo(['build']))).toEqual({ hits: 0, misses: 1 });
    expect(runApp()).toMatch(/ loud=true /);
  });

  it('misses for the proc-macro and every crate that uses it when the macro changes', () => {
    const lib = path.join(project, 'mac', 'src', 'lib.rs');
    fs.writeFileSync(lib, fs.readFileSync(lib, 'utf8').replace('"42"', '"43"'));
    sleep(100);
    expect(delta(() => cargo(['build']))).toEqual({ hits: 0, misses: 2 });
    expect(runApp()).toMatch(/ answer=43 /);
  });

  it('does not cache incremental compiles, and says why', () => {
    const before = sb.stats().stats.nonCacheable['incremental compilation'] ?? 0;
    const lib = path.join(project, 'envy', 'src', 'lib.rs');
    fs.appendFileSync(lib, '\npub fn more() {}\n');
    sleep(100);
    cargo(['build'], { CARGO_INCREMENTAL: '1' });
    expect(sb.stats().stats.nonCacheable['incremental compilation']).toBeGreaterThan(before);
    expect(runApp()).toMatch(/ x=1 /);
  });

  it('caches release builds and cargo check too', () => {
    cargo(['build', '--release']);
    cargo(['clean', '--release']);
    const release = delta(() => cargo(['build', '--release']));
    expect(release).toEqual({ hits: 6, misses: 0 });
    const out = spawnSync(path.join(project, 'target', 'release', 'app'), { encoding: 'utf8' }).stdout;
    expect(out.trim()).toBe('gen=two loud=true x=1 answer=43 pid=true width=5');
    cargo(['check']);
    cargo(['clean']);
    // check emits metadata only: its own entries, all hits the second time.
    expect(delta(() => cargo(['check']))).toEqual({ hits: 6, misses: 0 });
  });

  it('keys a static library that a #[link] attribute pulls from a -L native= directory', () => {
    const lib = (value: number) => {
      sb.file('native/f.c', `int f(void) { return ${value}; }\n`);
      const cc = sb.run(['sh', '-c', 'cd native && gcc -c f.c && rm -f libfoo.a && ar rcs libfoo.a f.o']);
      expect(cc.status, cc.stderr).toBe(0);
      sleep(100);
    };
    lib(1);
    sb.file(
      'nat.rs',
      '#[link(name = "foo", kind = "static")]\nextern "C" { fn f() -> i32; }\npub fn g() -> i32 { unsafe { f() } }\n',
    );
    const args = [
      'rustc',
      '--crate-name',
      'nat',
      '--crate-type',
      'lib',
      '--out-dir',
      'nat-out',
      '-L',
      'native=native',
      'nat.rs',
    ];
    const compile = () => {
      const r = sb.run([sb.client, ...args], { env });
      expect(r.status, r.stderr).toBe(0);
    };
    expect(delta(compile)).toEqual({ hits: 0, misses: 1 });
    // No dep-info asked for: kiln's own dep-info run must leave the rlib as plain rustc writes it.
    const plain = sb.run(['rustc', ...args.slice(1, 5), '--out-dir', 'nat-plain', ...args.slice(7)], { env });
    expect(plain.status, plain.stderr).toBe(0);
    expect(sb.read('nat-out/libnat.rlib').equals(sb.read('nat-plain/libnat.rlib'))).toBe(true);
    expect(delta(compile)).toEqual({ hits: 1, misses: 0 });
    lib(2); // the rlib bundles libfoo.a: a new archive must not hit the old rlib
    expect(delta(compile)).toEqual({ hits: 0, misses: 1 });
  });

  it('runs a "rustc" that is not rustc unchanged', () => {
    const fake = sb.file('fake/rustc', '#!/bin/sh\necho "not really rustc: $*"\nexit 3\n');
    fs.chmodSync(fake, 0o755);
    const r = sb.kiln([fake, '--crate-name', 'a', '--crate-type', 'lib', 'a.rs']);
    expect(r.status).toBe(3);
    expect(r.stdout).toBe('not really rustc: --crate-name a --crate-type lib a.rs\n');
  });

  it('returns a failing crate compile as it is, and stores nothing', () => {
    sb.file('bad.rs', 'pub fn f() -> u32 { "no" }\n');
    const args = ['rustc', '--crate-name', 'bad', '--crate-type', 'lib', '--error-format=json', 'bad.rs'];
    const before = rust().failed;
    const r = sb.run([sb.client, ...args], { env: env });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/"level":"error"/);
    expect(rust().failed).toBe(before + 1);
    expect(fs.existsSync(path.join(sb.work, 'libbad.rlib'))).toBe(false);
  });

  it('never breaks a build with non-UTF-8 bytes in its environment or working directory', () => {
    // Node cannot pass non-UTF-8 strings: the shell makes them from octal escapes. kiln hands such
    // calls back to the client, which runs rustc itself, so the result is rustc's own.
    const script = (client: string, out: string) =>
      [
        "export KILN_JUNK=$(printf 'caf\\351')",
        "d=$(printf 'dir\\351')",
        `mkdir -p "$d" ${out}`,
        'printf "pub fn f() -> u32 { 7 }\\n" | tee lib.rs > "$d/lib.rs"',
        `${client} rustc --crate-name nonutf --crate-type lib --out-dir ${out} lib.rs || exit 10`,
        'cd "$d" && { ' +
          `${client} rustc --crate-name inner --crate-type lib lib.rs; echo "cwd status $?"; }`,
      ].join('\n');
    // One directory for both: rustc records it in the rlib.
    const dir = path.join(sb.work, 'nonutf');
    fs.mkdirSync(dir);
    const plain = sb.run(['sh', '-c', script('', 'plain-out')], { env, cwd: dir });
    const ours = sb.run(['sh', '-c', script(`"${sb.client}"`, 'kiln-out')], { env, cwd: dir });
    expect(plain.status, plain.stderr).toBe(0);
    expect(ours.status, ours.stderr).toBe(0);
    // rustc 1.95 panics on a non-UTF-8 working directory; through kiln it does exactly the same.
    expect(ours.stdout).toBe(plain.stdout);
    const rlib = (out: string) => fs.readFileSync(path.join(dir, out, 'libnonutf.rlib'));
    expect(rlib('kiln-out').equals(rlib('plain-out'))).toBe(true);
    expect(sb.stats().stats.nonCacheable['non-UTF-8 arguments or environment']).toBeGreaterThanOrEqual(2);
  });
});
