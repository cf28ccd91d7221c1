import { describe, expect, it } from 'vitest';
import { buildScriptOutDir, keyEnvironment, relocateDepInfo } from '../src/daemon/rust-compile.js';

describe('keyEnvironment', () => {
  it("keys what cargo says about the crate and rustc's own variables, not cargo's settings", () => {
    const key = new Map(
      keyEnvironment({
        CARGO_PKG_VERSION: '0.1.0',
        CARGO_MAKEFLAGS: '-j2',
        CARGO_TARGET_DIR: '/t',
        RUSTC_FORCE_RUSTC_VERSION: 'custom',
        MACOSX_DEPLOYMENT_TARGET: '11.0',
        HOME: '/home/x',
      }),
    );
    expect(key.get('CARGO_PKG_VERSION')).toBe('0.1.0');
    expect(key.has('CARGO_MAKEFLAGS')).toBe(false);
    expect(key.has('CARGO_TARGET_DIR')).toBe(false);
    expect(key.has('HOME')).toBe(false);
    // rustc writes it in place of its version into every crate's metadata (stable rustc too).
    expect(key.get('RUSTC_FORCE_RUSTC_VERSION')).toBe('custom');
    // Build scripts set it with cargo:rustc-env; rustc reads it for Apple targets.
    expect(key.get('MACOSX_DEPLOYMENT_TARGET')).toBe('11.0');
    // Unset variables are keyed as unset: setting one later must miss.
    expect(key.has('RUSTC_BOOTSTRAP')).toBe(true);
    expect(key.get('RUSTC_BOOTSTRAP')).toBeUndefined();
  });
});

describe('buildScriptOutDir', () => {
  it("recognises only cargo's build-script output directories", () => {
    const out = '/w/target/debug/build/gen-f5fad3be767c17c0/out';
    expect(buildScriptOutDir({ OUT_DIR: out })).toBe(out);
    expect(buildScriptOutDir({})).toBeUndefined();
    // A variable the user set (cargo passes it through to crates without a build script).
    expect(buildScriptOutDir({ OUT_DIR: '/home/me/src' })).toBeUndefined();
    expect(buildScriptOutDir({ OUT_DIR: 'target/debug/build/gen-f5fad3be767c17c0/out' })).toBeUndefined();
  });
});

describe('relocateDepInfo', () => {
  const depInfo = (out: string, read: string) =>
    [
      `${out}/a-1.d: src/lib.rs ${read}/gen.rs`,
      '',
      `${out}/liba-1.rlib: src/lib.rs ${read}/gen.rs`,
      '',
      'src/lib.rs:',
      `${read}/gen.rs:`,
      '',
      '# env-dep:KEEP=/w/t dir/deps',
      '',
    ].join('\n');

  it('moves outputs as rustc names them and files read as it escapes them, either way', () => {
    // rustc 1.95: outputs as they are, the files read with spaces escaped.
    for (const [from, to] of [
      ['/w/t2/deps', '/w/t dir/deps'],
      ['/w/t dir/deps', '/w/t2/deps'],
      ['/w/t dir/deps', '/w/t dir/x/t dir/deps'],
    ] as const) {
      const moved = relocateDepInfo(Buffer.from(depInfo(from, from.replaceAll(' ', '\\ '))), from, to);
      expect(moved.toString()).toBe(depInfo(to, to.replaceAll(' ', '\\ ')));
    }
  });
});
