import { describe, expect, it } from 'vitest';
import { parseRustDepInfo } from '../src/compiler/depfile.js';
import { parseNvccArgs } from '../src/compiler/nvcc-args.js';
import { parseRustcArgs, type RustCompile, rustOutputs } from '../src/compiler/rustc-args.js';

const cwd = '/w/reg/foo-1.0';
/** A library crate compile as cargo 1.95 spells it. */
const cargoLib = [
  '--crate-name',
  'foo',
  '--edition=2021',
  '/w/reg/foo-1.0/src/lib.rs',
  '--error-format=json',
  '--json=diagnostic-rendered-ansi,artifacts,future-incompat',
  '--crate-type',
  'lib',
  '--emit=dep-info,metadata,link',
  '-C',
  'embed-bitcode=no',
  '-C',
  'debuginfo=2',
  '--cfg',
  'feature="std"',
  '-C',
  'metadata=1949e50659974901',
  '-C',
  'extra-filename=-9cddbb14c5be8b81',
  '--out-dir',
  '/w/target/debug/deps',
  '-L',
  'dependency=/w/target/debug/deps',
  '--extern',
  'memchr=/w/target/debug/deps/libmemchr-85444e00ba1b7355.rmeta',
  '--cap-lints',
  'allow',
];

function cacheable(args: readonly string[]): RustCompile {
  const parsed = parseRustcArgs(args, cwd);
  if (!parsed.cacheable) throw new Error(`not cacheable: ${parsed.reason}`);
  return parsed;
}

const reason = (args: readonly string[]) => {
  const parsed = parseRustcArgs(args, cwd);
  return parsed.cacheable ? undefined : parsed.reason;
};

describe('parseRustcArgs', () => {
  it('reads a cargo library compile: outputs, externs, and a key without output or search paths', () => {
    const p = cacheable(cargoLib);
    expect(p.crateName).toBe('foo');
    expect(p.crateTypes).toEqual(['lib']);
    expect([...p.emits].sort()).toEqual(['dep-info', 'link', 'metadata']);
    expect(p.outDir).toBe('/w/target/debug/deps');
    expect(p.externs).toEqual([['memchr', '/w/target/debug/deps/libmemchr-85444e00ba1b7355.rmeta']]);
    expect(p.keyArgs.join(' ')).not.toContain('/w/target');
    expect(p.keyArgs).toContain('--extern=memchr');
    expect(p.keyArgs).toContain('--cfg=feature="std"');
    expect(rustOutputs(p, 'x86_64-unknown-linux-gnu')).toEqual([
      ['rlib', '/w/target/debug/deps/libfoo-9cddbb14c5be8b81.rlib'],
      ['rmeta', '/w/target/debug/deps/libfoo-9cddbb14c5be8b81.rmeta'],
      ['dep-info', '/w/target/debug/deps/foo-9cddbb14c5be8b81.d'],
    ]);
  });

  it('keys every option that changes the output, in every spelling', () => {
    const base = cacheable(cargoLib).keyArgs;
    for (const extra of [
      ['-Copt-level=3'],
      ['-C', 'opt-level=3'],
      ['--codegen', 'opt-level=3'],
      ['-O'],
      ['-g'],
    ]) {
      expect(cacheable([...cargoLib, ...extra]).keyArgs).not.toEqual(base);
    }
    expect(cacheable([...cargoLib, '-Copt_level=3']).keyArgs).toEqual(
      cacheable([...cargoLib, '-Copt-level=3']).keyArgs,
    );
    expect(cacheable([...cargoLib, '--cfg', 'feature="x"']).keyArgs).not.toEqual(base);
  });

  it('names proc-macro and staticlib outputs for the target', () => {
    const macro = cacheable([
      '--crate-name',
      'm',
      '--crate-type',
      'proc-macro',
      '--emit=dep-info,link',
      'src/lib.rs',
    ]);
    expect(rustOutputs(macro, 'x86_64-unknown-linux-gnu')).toEqual([
      ['proc-macro', '/w/reg/foo-1.0/libm.so'],
      ['dep-info', '/w/reg/foo-1.0/m.d'],
    ]);
    const lib = cacheable(['--crate-name', 's', '--crate-type', 'staticlib', 'lib.rs']);
    expect(rustOutputs(lib, 'x86_64-unknown-linux-gnu')).toEqual([['staticlib', '/w/reg/foo-1.0/libs.a']]);
    expect(rustOutputs(lib, 'x86_64-pc-windows-msvc')).toBeUndefined();
  });

  it('keeps the -L directories whose libraries can end up in the output, not dependency ones', () => {
    const p = cacheable([...cargoLib, '-L', 'native=/opt/lib', '-L', 'crates', '-l', 'static=z']);
    expect(p.searchDirs).toEqual([
      { kind: 'native', dir: '/opt/lib' },
      { kind: 'all', dir: '/w/reg/foo-1.0/crates' },
    ]);
  });

  it('keys a relative --out-dir (rustc writes it into the .d file as given) and target-cpu=native', () => {
    expect(cacheable([...cargoLib, '--out-dir', 'rel']).keyArgs).toContain('--out-dir=rel');
    expect(cacheable(cargoLib).keyHostCpu).toBe(false);
    expect(cacheable([...cargoLib, '-Ctarget-cpu=native']).keyHostCpu).toBe(true);
  });

  it.each([
    [['-vV'], 'query (-vV, --print, --help)'],
    [
      ['-', '--crate-name', '___', '--print=file-names', '--crate-type', 'bin'],
      'query (-vV, --print, --help)',
    ],
    [[...cargoLib, '-C', 'incremental=/w/target/debug/incremental'], 'incremental compilation'],
    [['--crate-name', 'b', '--crate-type', 'bin', 'main.rs'], 'crate type bin links a final binary'],
    [['--crate-name', 'c', '--crate-type', 'cdylib', 'lib.rs'], 'crate type cdylib links a final binary'],
    [['--crate-name', 't', '--test', 'lib.rs'], 'crate type bin links a final binary'],
    [['--crate-type', 'lib', 'lib.rs'], 'crate name not on the command line'],
    [['--crate-name', 'a', 'lib.rs'], 'crate type not on the command line'],
    [['--crate-name', 'a', '--crate-type', 'lib', '--emit=asm', 'lib.rs'], '--emit=asm'],
    [['--crate-name', 'a', '--crate-type', 'lib', '--emit=link=/x.rlib', 'lib.rs'], '--emit with a path'],
    [['--crate-name', 'a', '--crate-type', 'lib', 'a.rs', 'b.rs'], 'multiple input files'],
    [['--crate-name', 'a', '--crate-type', 'lib', '-'], 'source from stdin'],
    [['--crate-name', 'a', '--crate-type', 'lib', '@args'], 'argument file'],
    [
      ['--crate-name', 'a', '--crate-type', 'lib', '-C', 'split-debuginfo=unpacked', 'a.rs'],
      'split debuginfo',
    ],
    [['--crate-name', 'a', '--crate-type', 'lib', 'a.rs', '--crate-type'], '--crate-type without a value'],
  ])('%j is not cached: %s', (args, why) => {
    expect(reason(args)).toBe(why);
  });
});

describe('parseRustDepInfo', () => {
  it('reads files (only spaces are escaped) and env-deps (set, unset, escaped newlines)', () => {
    const text =
      '/o/x-1.d: src/lib.rs src\\ dir#x$$y/a.rs\n\n/o/libx-1.rlib: src/lib.rs\n\nsrc/lib.rs:\n\n' +
      '# env-dep:A=b\\nc\n# env-dep:UNSET\n';
    expect(parseRustDepInfo(text)).toEqual({
      files: ['src/lib.rs', 'src dir#x$$y/a.rs'],
      env: [
        ['A', 'b\nc'],
        ['UNSET', undefined],
      ],
    });
    expect(parseRustDepInfo('')).toBeUndefined();
  });
});

describe('parseNvccArgs', () => {
  const cu = (args: string[]) => parseNvccArgs(args);
  it('reads a .cu compile with its object, depfile and host compiler', () => {
    const p = cu(['-c', 'src/k.cu', '-odir', 'obj', '-ccbin', 'g++-12', '-MD', '-MF', 'k.d', '-arch=sm_80']);
    expect(p).toMatchObject({ cacheable: true, output: 'obj/k.o', depFile: 'k.d', hostCompiler: 'g++-12' });
    expect(cu(['-c', 'k.cu', '-Xcompiler', '-O2,-march=native'])).toMatchObject({ keyHostCpu: true });
  });

  it.each([
    [['k.cu', '-o', 'k'], 'nvcc call that does not compile (linking or another mode)'],
    [['-c', 'k.cu', '-arch=native'], '-arch=native (the local GPU)'],
    [['-c', 'k.cu', '-Xcompiler', '-fPIC -MD'], 'host compiler option -MD'],
    [['-c', 'k.cu', '-Xcompiler', '--coverage'], 'host compiler option --coverage'],
    [['-c', 'k.cu', '-MF', 'k.d'], '-MF without -MD'],
    [['-c', 'k.cu', '-time', 't.csv'], 'nvcc -time'],
    [['-c', 'k.cpp'], 'nvcc input that is not CUDA'],
    [['-c', 'a.cu', 'b.cu'], 'multiple input files'],
    [['-E', 'k.cu'], 'nvcc -E'],
  ])('%j is not cached: %s', (args, why) => {
    const p = cu(args);
    expect(p.cacheable ? undefined : p.reason).toBe(why);
  });
});
