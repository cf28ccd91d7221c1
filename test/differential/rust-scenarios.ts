/**
 * The Rust differential scenarios: each a tiny cargo workspace, one change, and what kiln must do
 * for every library crate after it. test/differential-rust.test.ts builds each start and end state
 * with plain cargo and through kiln and compares the bytes.
 */

/** Workspace files by relative path. */
export type Files = Record<string, string>;

/** What kiln does with a library crate's compile after the change. */
export type Outcome = 'hit' | 'miss' | 'uncached';

export interface Change {
  /** Files written over the start state. */
  readonly write?: Files;
  /** Text appended to files. */
  readonly append?: Files;
  /** [file, text, replacement]: the text must occur in the file. */
  readonly replace?: readonly (readonly [string, string, string])[];
  /** Files whose modification time is bumped, content unchanged. */
  readonly touch?: readonly string[];
  /** Cargo's environment after the change (undefined: unset); `{root}` is the workspace directory. */
  readonly env?: Record<string, string | undefined>;
  /** The workspace moves to a directory of this name. */
  readonly moveTo?: string;
  /** Arguments for `cargo build` after the change, instead of the scenario's. */
  readonly cargoArgs?: readonly string[];
}

export interface Scenario {
  readonly name: string;
  readonly files: Files;
  /** Cargo's environment for the start state (and after the change, unless the change says otherwise). */
  readonly env?: Record<string, string>;
  readonly release?: boolean;
  /** `cargo check` instead of `cargo build`. */
  readonly check?: boolean;
  /** Arguments for `cargo build`; `{host}` is rustc's host triple. */
  readonly cargoArgs?: readonly string[];
  /** The workspace's directory name (default: from the scenario's name). */
  readonly dir?: string;
  readonly change: Change;
  /** Every library crate the build compiles (all cacheable at the start) and its outcome after the change. */
  readonly after: Record<string, Outcome>;
  /**
   * A change kiln cannot see (README, Limitations): the suite expects its bytes to differ from plain
   * cargo's, so that closing the gap shows up here.
   */
  readonly knownGap?: string;
  /** Crates whose outputs after the change plain cargo does not reproduce itself (incremental): not compared. */
  readonly unreproducible?: readonly string[];
}

const manifest = (
  name: string,
  { deps = [], extra = '', edition = '2021', version = '0.1.0' } = {} as {
    deps?: string[];
    extra?: string;
    edition?: string;
    version?: string;
  },
) =>
  `[package]\nname = "${name}"\nversion = "${version}"\nedition = "${edition}"\n\n` +
  `[dependencies]\n${deps.map((d) => `${d}\n`).join('')}${extra}`;

const path = (name: string) => `${name} = { path = "../${name}" }`;

function crate(
  name: string,
  src: string,
  opts: Parameters<typeof manifest>[1] & { build?: string; files?: Files } = {},
): Files {
  return {
    [`${name}/Cargo.toml`]: manifest(name, opts),
    [`${name}/src/lib.rs`]: src,
    ...(opts.build ? { [`${name}/build.rs`]: opts.build } : {}),
    ...opts.files,
  };
}

const workspace = (members: string[], extra = ''): Files => ({
  'Cargo.toml': `[workspace]\nmembers = [${members.map((m) => `"${m}"`).join(', ')}]\nresolver = "2"\n${extra}`,
});

const LEAF = 'pub fn leaf() -> u32 {\n    1\n}\n\npub fn generic<T: Default>() -> T {\n    T::default()\n}\n';
const TOP = 'pub fn top() -> u32 {\n    leaf::leaf() + leaf::generic::<u32>()\n}\n';

/** leaf ← top: the smallest workspace with a dependency edge. */
function pair(
  { root = '', leaf = LEAF, leafOpts = {}, top = TOP, topOpts = {} } = {} as {
    root?: string;
    leaf?: string;
    leafOpts?: Parameters<typeof crate>[2];
    top?: string;
    topOpts?: Parameters<typeof crate>[2];
  },
): Files {
  return {
    ...workspace(['leaf', 'top'], root),
    ...crate('leaf', leaf, leafOpts),
    ...crate('top', top, { ...topOpts, deps: [path('leaf'), ...(topOpts.deps ?? [])] }),
  };
}

const BOTH_MISS = { leaf: 'miss', top: 'miss' } as const;
const BOTH_HIT = { leaf: 'hit', top: 'hit' } as const;
const TOP_ONLY = { leaf: 'hit', top: 'miss' } as const;

const FEATURES = '\n[features]\ndefault = []\nloud = []\n';
const LOUD_SRC = `${LEAF}#[cfg(feature = "loud")]\npub const LOUD: bool = true;\n#[cfg(not(feature = "loud"))]\npub const LOUD: bool = false;\n`;
const LOUD_TOP = 'pub fn top() -> bool {\n    leaf::LOUD\n}\n';

const ENV_LEAF = `${LEAF}pub const X: &str = env!("KILN_DIFF_X");\n`;
const OPT_ENV_LEAF = `${LEAF}pub const Y: Option<&str> = option_env!("KILN_DIFF_Y");\n`;
const ENV_TOP = 'pub fn top() -> usize {\n    leaf::X.len()\n}\n';

const TEXT_LEAF = `${LEAF}pub const TEXT: &str = include_str!("../data/text.txt");\n`;

/** A build script that turns an input file into a cfg, an env var the crate reads, one it does not read, and code. */
const BUILD_RS = `use std::{env, fs, path::Path};
fn main() {
    println!("cargo::rerun-if-changed=input.txt");
    println!("cargo::rustc-check-cfg=cfg(mode_a)");
    println!("cargo::rustc-check-cfg=cfg(mode_b)");
    let input = fs::read_to_string("input.txt").unwrap();
    let mut lines = input.lines();
    let mut next = || lines.next().unwrap().to_string();
    println!("cargo::rustc-cfg={}", next());
    println!("cargo::rustc-env=KILN_GEN_READ={}", next());
    println!("cargo::rustc-env=KILN_GEN_UNREAD={}", next());
    let out = Path::new(&env::var("OUT_DIR").unwrap()).join("gen.rs");
    fs::write(out, format!("pub const GENERATED: u32 = {};\\n", next())).unwrap();
}
`;
const BUILD_LIB = `#[cfg(mode_a)]
pub const MODE: &str = "a";
#[cfg(mode_b)]
pub const MODE: &str = "b";
pub const READ: &str = env!("KILN_GEN_READ");
include!(concat!(env!("OUT_DIR"), "/gen.rs"));
`;
const BUILD_INPUT = 'mode_a\nread-1\nunread-1\n1\n';
function withBuildScript(): Files {
  return {
    ...workspace(['gen', 'top']),
    ...crate('gen', BUILD_LIB, { build: BUILD_RS, files: { 'gen/input.txt': BUILD_INPUT } }),
    ...crate('top', 'pub fn top() -> u32 {\n    gen::GENERATED + gen::MODE.len() as u32\n}\n', {
      deps: [path('gen')],
    }),
  };
}
const buildInput = (line: number, value: string) => {
  const lines = BUILD_INPUT.split('\n');
  lines[line] = value;
  return { write: { 'gen/input.txt': lines.join('\n') } };
};

const MACRO = `use proc_macro::TokenStream;
#[proc_macro]
pub fn answer(_: TokenStream) -> TokenStream {
    "42".parse().unwrap()
}
`;
/** leaf ← top → mac (a proc-macro). */
function withMacro(root = ''): Files {
  return {
    ...workspace(['leaf', 'mac', 'top'], root),
    ...crate('leaf', LEAF),
    ...crate('mac', MACRO, { extra: '\n[lib]\nproc-macro = true\n' }),
    ...crate('top', 'pub fn top() -> u32 {\n    leaf::leaf() + mac::answer!()\n}\n', {
      deps: [path('leaf'), path('mac')],
    }),
  };
}

/** A C library that a build script compiles and archives, bundled into `nat`'s rlib, under a staticlib. */
const NATIVE_BUILD = `use std::{env, process::Command};
fn main() {
    println!("cargo::rerun-if-changed=foo.c");
    let out = env::var("OUT_DIR").unwrap();
    let ok = Command::new("cc").args(["-c", "-fPIC", "foo.c", "-o"]).arg(format!("{out}/foo.o")).status().unwrap();
    assert!(ok.success());
    let ok = Command::new("ar").args(["crsD"]).arg(format!("{out}/libfoo.a")).arg(format!("{out}/foo.o")).status().unwrap();
    assert!(ok.success());
    println!("cargo::rustc-link-search=native={out}");
    println!("cargo::rustc-link-lib=static=foo");
}
`;
function withNativeLib(): Files {
  return {
    ...workspace(['nat', 'mid', 'st']),
    ...crate(
      'nat',
      'extern "C" {\n    fn foo() -> i32;\n}\npub fn nat() -> i32 {\n    unsafe { foo() }\n}\n',
      {
        build: NATIVE_BUILD,
        files: { 'nat/foo.c': 'int foo(void) { return 1; }\n' },
      },
    ),
    ...crate('mid', 'pub fn mid() -> i32 {\n    nat::nat() + 1\n}\n', { deps: [path('nat')] }),
    ...crate('st', '#[no_mangle]\npub extern "C" fn st() -> i32 {\n    mid::mid()\n}\n', {
      deps: [path('mid')],
      extra: '\n[lib]\ncrate-type = ["staticlib"]\n',
    }),
  };
}

/** leaf ← mid ← st (a staticlib, which bundles every crate under it). */
function underStaticlib(): Files {
  return {
    ...workspace(['leaf', 'mid', 'st']),
    ...crate('leaf', LEAF),
    ...crate('mid', 'pub fn mid() -> u32 {\n    leaf::leaf() + 1\n}\n', { deps: [path('leaf')] }),
    ...crate('st', '#[no_mangle]\npub extern "C" fn st() -> u32 {\n    mid::mid()\n}\n', {
      deps: [path('mid')],
      extra: '\n[lib]\ncrate-type = ["staticlib"]\n',
    }),
  };
}

const ITOA_TOP =
  'pub fn top(n: u64) -> usize {\n    itoa::Buffer::new().format(n).len() + leaf::leaf() as usize\n}\n';
const withItoa = () => pair({ top: ITOA_TOP, topOpts: { deps: ['itoa = "1"'] } });

const profile = (text: string) => ({ append: { 'Cargo.toml': `\n[profile.dev]\n${text}\n` } });

export const SCENARIOS: readonly Scenario[] = [
  // Features
  {
    name: 'a dependency feature turned on in Cargo.toml',
    files: pair({ leaf: LOUD_SRC, leafOpts: { extra: FEATURES }, top: LOUD_TOP }),
    change: {
      replace: [['top/Cargo.toml', path('leaf'), 'leaf = { path = "../leaf", features = ["loud"] }']],
    },
    after: BOTH_MISS,
  },
  {
    name: 'a default feature turned off',
    files: pair({
      leaf: LOUD_SRC,
      leafOpts: { extra: FEATURES.replace('default = []', 'default = ["loud"]') },
      top: LOUD_TOP,
    }),
    change: { replace: [['leaf/Cargo.toml', 'default = ["loud"]', 'default = []']] },
    after: BOTH_MISS,
  },
  {
    name: 'a feature no code looks at turned on',
    files: pair({ leafOpts: { extra: '\n[features]\nunused = []\n' } }),
    change: {
      replace: [['top/Cargo.toml', path('leaf'), 'leaf = { path = "../leaf", features = ["unused"] }']],
    },
    after: BOTH_MISS,
  },
  // RUSTFLAGS
  {
    name: 'RUSTFLAGS --cfg',
    files: pair(),
    change: { env: { RUSTFLAGS: '--cfg kiln_diff' } },
    after: BOTH_MISS,
  },
  {
    name: 'RUSTFLAGS -C opt-level',
    files: pair(),
    change: { env: { RUSTFLAGS: '-C opt-level=2' } },
    after: BOTH_MISS,
  },
  {
    name: 'RUSTFLAGS -C target-cpu=native, and back',
    files: pair(),
    env: { RUSTFLAGS: '-C target-cpu=native' },
    change: { env: { RUSTFLAGS: undefined } },
    after: BOTH_MISS,
  },
  {
    name: 'RUSTFLAGS --remap-path-prefix',
    files: pair(),
    change: { env: { RUSTFLAGS: '--remap-path-prefix={root}=/remapped' } },
    after: BOTH_MISS,
  },
  {
    name: 'build.rustflags in .cargo/config.toml',
    files: pair(),
    change: { append: { '.cargo/config.toml': '[build]\nrustflags = ["-C", "overflow-checks=off"]\n' } },
    after: BOTH_MISS,
  },
  // Environment variables read by env!/option_env!, and ones nothing reads
  {
    name: 'an env!() value changes',
    files: pair({ leaf: ENV_LEAF, top: ENV_TOP }),
    env: { KILN_DIFF_X: 'one' },
    change: { env: { KILN_DIFF_X: 'two' } },
    after: BOTH_MISS,
  },
  {
    name: 'an env!() read by the dependent only changes',
    files: pair({ top: `${TOP}pub const X: &str = env!("KILN_DIFF_X");\n` }),
    env: { KILN_DIFF_X: 'one' },
    change: { env: { KILN_DIFF_X: 'two' } },
    after: TOP_ONLY,
  },
  {
    name: 'an env!() value with a newline, a backslash and an = sign changes',
    files: pair({ leaf: ENV_LEAF, top: ENV_TOP }),
    env: { KILN_DIFF_X: 'a\nb=c' },
    change: { env: { KILN_DIFF_X: 'a\\nb=c' } },
    after: BOTH_MISS,
  },
  {
    name: 'an option_env!() variable gets set',
    files: pair({ leaf: OPT_ENV_LEAF }),
    change: { env: { KILN_DIFF_Y: 'set' } },
    after: BOTH_MISS,
  },
  {
    name: 'an option_env!() variable gets unset',
    files: pair({ leaf: OPT_ENV_LEAF }),
    env: { KILN_DIFF_Y: 'set' },
    change: { env: { KILN_DIFF_Y: undefined } },
    after: BOTH_MISS,
  },
  {
    name: 'a variable no crate reads changes',
    files: pair({ leaf: OPT_ENV_LEAF }),
    env: { KILN_DIFF_UNREAD: '1' },
    change: { env: { KILN_DIFF_UNREAD: '2' } },
    after: BOTH_HIT,
  },
  {
    name: 'SOURCE_DATE_EPOCH set (rustc does not read it)',
    files: pair(),
    change: { env: { SOURCE_DATE_EPOCH: '1700000000' } },
    after: BOTH_HIT,
  },
  // Files read by include_str!/include_bytes!/mod
  {
    name: 'an include_str!() file changes',
    files: { ...pair({ leaf: TEXT_LEAF }), 'leaf/data/text.txt': 'one\n' },
    change: { write: { 'leaf/data/text.txt': 'two\n' } },
    after: BOTH_MISS,
  },
  {
    name: 'an include_bytes!() file changes in a crate nothing depends on',
    files: {
      ...pair(),
      ...workspace(['leaf', 'top', 'blob']),
      ...crate('blob', 'pub static BLOB: &[u8] = include_bytes!("../blob.bin");\n'),
      'blob/blob.bin': '\x00\x01\x02',
    },
    change: { write: { 'blob/blob.bin': '\x00\x01\x03' } },
    after: { ...BOTH_HIT, blob: 'miss' },
  },
  {
    name: 'an include_str!() file rewritten with the same content',
    files: { ...pair({ leaf: TEXT_LEAF }), 'leaf/data/text.txt': 'one\n' },
    change: { touch: ['leaf/data/text.txt'] },
    after: BOTH_HIT,
  },
  {
    name: 'a module file changes',
    files: pair({
      leaf: `${LEAF}mod inner;\npub use inner::*;\n`,
      leafOpts: { files: { 'leaf/src/inner.rs': 'pub fn inner() -> u8 {\n    1\n}\n' } },
    }),
    change: { write: { 'leaf/src/inner.rs': 'pub fn inner() -> u8 {\n    2\n}\n' } },
    after: BOTH_MISS,
  },
  // Build scripts
  {
    name: 'a build script prints another rustc-cfg',
    files: withBuildScript(),
    change: buildInput(0, 'mode_b'),
    after: { gen: 'miss', top: 'miss' },
  },
  {
    name: 'a build script sets another value for a rustc-env the crate reads',
    files: withBuildScript(),
    change: buildInput(1, 'read-2'),
    after: { gen: 'miss', top: 'miss' },
  },
  {
    name: 'a build script sets another value for a rustc-env nothing reads',
    files: withBuildScript(),
    change: buildInput(2, 'unread-2'),
    after: { gen: 'hit', top: 'hit' },
  },
  {
    name: 'a build script generates different code',
    files: withBuildScript(),
    change: buildInput(3, '2'),
    after: { gen: 'miss', top: 'miss' },
  },
  {
    name: 'a build script reruns and prints the same',
    files: withBuildScript(),
    change: { touch: ['gen/input.txt'] },
    after: { gen: 'hit', top: 'hit' },
  },
  {
    name: 'a static C library a build script makes is rebuilt, under a staticlib',
    files: withNativeLib(),
    change: { write: { 'nat/foo.c': 'int foo(void) { return 2; }\n' } },
    after: { nat: 'miss', mid: 'miss', st: 'miss' },
  },
  // Manifest and profile
  {
    name: 'edition 2021 → 2024',
    files: pair(),
    change: { replace: [['leaf/Cargo.toml', 'edition = "2021"', 'edition = "2024"']] },
    after: BOTH_MISS,
  },
  {
    name: 'CARGO_PKG_VERSION bump of the dependency',
    files: pair(),
    change: { replace: [['leaf/Cargo.toml', 'version = "0.1.0"', 'version = "0.1.1"']] },
    after: BOTH_MISS,
  },
  {
    name: 'CARGO_PKG_VERSION bump of the dependent',
    files: pair(),
    change: { replace: [['top/Cargo.toml', 'version = "0.1.0"', 'version = "0.2.0"']] },
    after: TOP_ONLY,
  },
  {
    name: 'a package description (CARGO_PKG_DESCRIPTION, a proc-macro may read it)',
    files: pair(),
    change: { replace: [['top/Cargo.toml', 'edition = "2021"', 'edition = "2021"\ndescription = "top"']] },
    after: TOP_ONLY,
  },
  { name: 'profile opt-level = 1', files: pair(), change: profile('opt-level = 1'), after: BOTH_MISS },
  {
    name: 'a per-package opt-level override for the dependency',
    files: pair(),
    change: { append: { 'Cargo.toml': '\n[profile.dev.package.leaf]\nopt-level = 2\n' } },
    after: BOTH_MISS,
  },
  { name: 'profile debug = false', files: pair(), change: profile('debug = false'), after: BOTH_MISS },
  {
    name: 'profile debug = "line-tables-only"',
    files: pair(),
    change: profile('debug = "line-tables-only"'),
    after: BOTH_MISS,
  },
  {
    name: 'profile codegen-units = 1',
    files: pair(),
    change: profile('codegen-units = 1'),
    after: BOTH_MISS,
  },
  {
    name: 'profile panic = "abort" (proc-macros keep unwinding)',
    files: withMacro(),
    change: profile('panic = "abort"'),
    after: { leaf: 'miss', mac: 'hit', top: 'miss' },
  },
  {
    name: 'profile debug-assertions = false',
    files: pair(),
    change: profile('debug-assertions = false'),
    after: BOTH_MISS,
  },
  {
    // Only top's dependencies: a whole-workspace build compiles mac twice, as a member (dev profile)
    // and for top (build-override).
    name: 'build-override opt-level (proc-macros only)',
    files: withMacro(),
    cargoArgs: ['-p', 'top'],
    change: { append: { 'Cargo.toml': '\n[profile.dev.build-override]\nopt-level = 3\n' } },
    after: { leaf: 'hit', mac: 'miss', top: 'miss' },
  },
  {
    name: 'an explicit --target: RUSTFLAGS no longer reach proc-macros',
    files: withMacro(),
    cargoArgs: ['--target', '{host}'],
    change: { env: { RUSTFLAGS: '--cfg kiln_diff' } },
    after: { leaf: 'miss', mac: 'hit', top: 'miss' },
  },
  {
    name: 'a [lints] table in the dependent',
    files: pair(),
    change: { append: { 'top/Cargo.toml': '\n[lints.rust]\nunsafe_code = "forbid"\n' } },
    after: TOP_ONLY,
  },
  {
    name: 'release profile turns on lto',
    files: pair(),
    release: true,
    change: { append: { 'Cargo.toml': '\n[profile.release]\nlto = true\n' } },
    after: BOTH_MISS,
  },
  // Sources
  {
    name: "a dependency's code changes",
    files: pair(),
    change: { replace: [['leaf/src/lib.rs', '    1\n', '    2\n']] },
    after: BOTH_MISS,
  },
  {
    // Plain cargo leaves top's bytes as they were (leaf's crate hash ignores a trailing comment), but
    // leaf's rmeta records its sources' hashes and kiln keys extern crates by content: top misses.
    name: 'a comment appended to a dependency',
    files: pair(),
    change: { append: { 'leaf/src/lib.rs': '// only a comment\n' } },
    after: BOTH_MISS,
  },
  {
    name: 'a comment line inserted at the top of a dependency',
    files: pair(),
    change: { replace: [['leaf/src/lib.rs', 'pub fn leaf', '// only a comment\npub fn leaf']] },
    after: BOTH_MISS,
  },
  {
    name: "the dependent's code changes",
    files: pair(),
    change: { replace: [['top/src/lib.rs', '+', '*']] },
    after: TOP_ONLY,
  },
  {
    name: "cargo check: a dependency's code changes",
    files: pair(),
    check: true,
    change: { replace: [['leaf/src/lib.rs', '    1\n', '    2\n']] },
    after: BOTH_MISS,
  },
  {
    name: 'a crate two levels under a staticlib changes',
    files: underStaticlib(),
    change: { replace: [['leaf/src/lib.rs', '    1\n', '    2\n']] },
    after: { leaf: 'miss', mid: 'miss', st: 'miss' },
  },
  {
    // leaf's rmeta changes, mid's rlib does not (as top's above): st is keyed on mid's rlib and hits,
    // though it bundles leaf's code; that code is the same.
    name: 'a comment appended to a crate two levels under a staticlib',
    files: underStaticlib(),
    change: { append: { 'leaf/src/lib.rs': '// only a comment\n' } },
    after: { leaf: 'miss', mid: 'miss', st: 'hit' },
  },
  {
    name: 'a source touched, content unchanged',
    files: pair(),
    change: { touch: ['leaf/src/lib.rs'] },
    after: BOTH_HIT,
  },
  {
    name: 'the dependent gets a new path dependency',
    files: { ...pair(), ...workspace(['leaf', 'top', 'extra']), ...crate('extra', 'pub fn extra() {}\n') },
    change: { replace: [['top/Cargo.toml', path('leaf'), `${path('leaf')}\n${path('extra')}`]] },
    after: { leaf: 'hit', top: 'miss', extra: 'hit' },
  },
  {
    name: 'a proc-macro changes',
    files: withMacro(),
    change: { replace: [['mac/src/lib.rs', '"42"', '"43"']] },
    after: { leaf: 'hit', mac: 'miss', top: 'miss' },
  },
  {
    name: 'a registry crate (itoa) under a changed dependent',
    files: withItoa(),
    change: { replace: [['top/src/lib.rs', '+ leaf', '* leaf']] },
    after: { itoa: 'hit', leaf: 'hit', top: 'miss' },
  },
  // Crate types kiln does not cache
  {
    name: 'the dependent becomes a cdylib',
    files: pair(),
    change: { append: { 'top/Cargo.toml': '\n[lib]\ncrate-type = ["cdylib"]\n' } },
    after: { leaf: 'hit', top: 'uncached' },
  },
  {
    name: 'incremental compilation turned on',
    files: pair(),
    change: { env: { CARGO_INCREMENTAL: '1' } },
    after: { leaf: 'uncached', top: 'uncached' },
    unreproducible: ['leaf', 'top'],
  },
  {
    name: 'profile split-debuginfo = "packed"',
    files: pair(),
    change: profile('split-debuginfo = "packed"'),
    after: { leaf: 'uncached', top: 'uncached' },
  },
  // The compiler's own environment
  {
    name: 'RUSTC_FORCE_RUSTC_VERSION set',
    files: pair(),
    change: { env: { RUSTC_FORCE_RUSTC_VERSION: 'kiln-diff-1' } },
    after: BOTH_MISS,
  },
  {
    name: 'RUSTC_FORCE_RUSTC_VERSION changed',
    files: pair(),
    env: { RUSTC_FORCE_RUSTC_VERSION: 'kiln-diff-1' },
    change: { env: { RUSTC_FORCE_RUSTC_VERSION: 'kiln-diff-2' } },
    after: BOTH_MISS,
  },
  { name: 'RUSTC_BOOTSTRAP=1', files: pair(), change: { env: { RUSTC_BOOTSTRAP: '1' } }, after: BOTH_MISS },
  {
    name: 'a variable a proc-macro reads with std::env::var changes',
    knownGap: 'rustc does not know what a proc-macro reads: no dep-info entry, so kiln hits',
    files: {
      ...withMacro(),
      'mac/src/lib.rs': `${MACRO}#[proc_macro]\npub fn from_env(_: TokenStream) -> TokenStream {\n    format!("{:?}", std::env::var("KILN_DIFF_MACRO").unwrap_or_default()).parse().unwrap()\n}\n`,
      'top/src/lib.rs': 'pub const FROM_ENV: &str = mac::from_env!();\n',
    },
    env: { KILN_DIFF_MACRO: 'one' },
    change: { env: { KILN_DIFF_MACRO: 'two' } },
    after: { leaf: 'hit', mac: 'hit', top: 'miss' },
  },
  // Where things are
  {
    name: 'another target directory (CARGO_TARGET_DIR)',
    files: pair(),
    change: { env: { CARGO_TARGET_DIR: '{root}/elsewhere' } },
    after: BOTH_HIT,
  },
  {
    name: 'a target directory with a space and a non-ASCII letter in its path',
    files: pair(),
    change: { env: { CARGO_TARGET_DIR: '{root}/tärget dir' } },
    after: BOTH_HIT,
  },
  {
    name: 'a workspace whose path has a space: a dependency changes',
    dir: 'with space',
    files: pair(),
    change: { replace: [['leaf/src/lib.rs', '    1\n', '    2\n']] },
    after: BOTH_MISS,
  },
  {
    // Not CARGO_PRIMARY_PACKAGE for leaf any more: kiln keys every CARGO_* variable cargo sets (a
    // proc-macro may read it), so leaf misses and rebuilds the same bytes; top hits on them.
    name: 'building only the dependent (cargo build -p top)',
    files: pair(),
    change: { cargoArgs: ['-p', 'top'] },
    after: { leaf: 'miss', top: 'hit' },
  },
  {
    name: 'the workspace moves (registry crates still hit)',
    files: withItoa(),
    change: { moveTo: 'moved here' },
    after: { itoa: 'hit', leaf: 'miss', top: 'miss' },
  },
];
