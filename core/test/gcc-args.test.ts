import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { type CacheableCompile, parseGccArgs } from '../src/compiler/gcc-args.js';
import { splitResponseFile } from '../src/compiler/response-file.js';

const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-args-'));
afterAll(() => fs.rmSync(cwd, { recursive: true, force: true }));
fs.writeFileSync(path.join(cwd, 'prof.gcda'), 'x');
fs.writeFileSync(path.join(cwd, 'plain.s'), '.text\nnop\n');
fs.writeFileSync(path.join(cwd, 'inc.s'), '.include "other.s"\n');
fs.writeFileSync(path.join(cwd, 'pch.h'), '');
fs.writeFileSync(path.join(cwd, 'pch.h.gch'), '');

const parse = (...args: string[]) => parseGccArgs('gcc', args, cwd);
const ok = (...args: string[]): CacheableCompile => {
  const r = parse(...args);
  if (!r.cacheable) throw new Error(`expected cacheable, got: ${r.reason}`);
  return r;
};

describe('parseGccArgs: not cacheable, with a reason', () => {
  it.each([
    [['a.c', '-o', 'a'], 'linking'],
    [['a.o', 'b.o', '-o', 'prog'], 'linking'],
    [['-c', 'a.c', 'x.o'], 'non-source input'],
    [['-E', 'a.c'], 'preprocessor only (-E)'],
    [['-S', 'a.c'], 'assembly output (-S)'],
    [['-M', 'a.c'], 'dependency listing only (-M/-MM)'],
    [['-MM', '-c', 'a.c'], 'dependency listing only (-M/-MM)'],
    [['-c', 'a.c', 'b.c'], 'multiple source files'],
    [['-c', '-x', 'c', '-'], 'input from stdin'],
    [['-c', 'a.c', '-fprofile-use'], '-fprofile-use without its file'],
    [['-c', 'a.c', '-fprofile-use=missing.gcda'], '-fprofile-use file missing'],
    [['-c', 'a.c', '-Xclang', '-load', '-Xclang', 'p.so'], 'clang plugin (-Xclang)'],
    [['-c', 'a.c', '-fplugin=foo.so'], 'compiler plugin'],
    [['-c', 'a.c', '-save-temps'], 'extra output files (-save-temps)'],
    [['-c', 'a.c', '-fdump-tree-all'], 'extra output files (-fdump-tree-all)'],
    [['-c', 'a.c', '-fsyntax-only'], 'no output (-fsyntax-only)'],
    [['-c', 'a.c', '-o', '-'], 'output to stdout'],
    [['-c', '-x', 'fortran', 'a.f'], 'unsupported language (-x fortran)'],
    [['-c', 'a.c', '-Wp,-MD,a.d'], 'dependency options through -Wp'],
    [['-c'], 'no input file'],
    [['-c', '@missing.rsp'], 'unreadable response file'],
    [['-c', 'a.c', '-include', 'pch.h'], 'precompiled header'],
    [['-c', 'a.c', '-o'], '-o without a value'],
    [['-c', 'a.c', '-MF', 'a.d'], 'dependency options without -MD'],
    [['-c', 'a.c', '-MT', 't'], 'dependency options without -MD'],
    [['-c', 'a.c', '-MP'], 'dependency options without -MD'],
    [['-c', 'a.c', '-Xpreprocessor', '-MD'], 'dependency options through -Xpreprocessor'],
    [['-c', 'a.c', '-Xclang', '-dependency-file', '-Xclang', 'x.d'], 'dependency options through -Xclang'],
    [['-c', 'a.c', '-fpass-plugin=p.so'], 'compiler plugin'],
    [['-c', 'a.c', '-ivfsoverlay', 'o.yaml'], 'VFS overlay (-ivfsoverlay)'],
    [['-c', 'a.c', '-fsanitize-ignorelist=missing.txt'], '-fsanitize-ignorelist file missing'],
  ])('%j → %s', (args, reason) => {
    expect(parse(...args)).toEqual({ cacheable: false, reason });
  });
});

describe('parseGccArgs: cacheable calls', () => {
  it('finds input, language and default output', () => {
    const r = ok('-c', 'src/foo.cpp', '-O2');
    expect(r.input).toBe('src/foo.cpp');
    expect(r.language).toBe('c++');
    expect(r.output).toBe('foo.o');
    expect(r.depFile).toBeUndefined();
    expect(r.preprocessArgs).toEqual(['src/foo.cpp', '-O2', '-E']);
  });

  it('takes -x for inputs after it and attached -o', () => {
    const r = ok('-x', 'c++', '-c', 'weird.txt', '-oout/w.o');
    expect(r.language).toBe('c++');
    expect(r.output).toBe('out/w.o');
    expect(r.preprocessArgs).toEqual(['-x', 'c++', 'weird.txt', '-E']);
  });

  it('does not take option values for inputs', () => {
    const withValues = ['-I', 'inc', '-include', 'config.h', '-isystem', 'sys', '-D', 'X=1', 'a.c'];
    const r = ok('-c', ...withValues, '-MF', 'a.d', '-MD');
    expect(r.input).toBe('a.c');
    expect(r.depFile).toBe('a.d');
    expect(r.preprocessArgs).toEqual([...withValues, '-E']);
  });

  it('derives the depfile from -o, and puts the object path in the key when it is the target', () => {
    const r = ok('-c', 'a.c', '-o', 'obj/a.o', '-MMD');
    expect(r.depFile).toBe('obj/a.d');
    expect(r.keyArgs).toContain('obj/a.o');
    const explicit = ok('-c', 'a.c', '-o', 'obj/a.o', '-MD', '-MF', 'deps/a.d', '-MT', 'target');
    expect(explicit.depFile).toBe('deps/a.d');
    expect(explicit.keyArgs).not.toContain('obj/a.o');
    expect(explicit.keyArgs).not.toContain('deps/a.d');
    expect(explicit.keyArgs).toContain('target');
  });

  it('leaves output paths out of the key when the object does not embed them', () => {
    const a = ok('-c', 'a.c', '-o', 'x/a.o', '-O2');
    const b = ok('-c', 'a.c', '-o', 'y/b.o', '-O2');
    expect(a.keyArgs).toEqual(b.keyArgs);
    expect(a.keyCwd).toBe(false);
  });

  it('knows the extra outputs of -gsplit-dwarf and --coverage', () => {
    const r = ok('-c', 'a.c', '-o', 'out/a.o', '-g', '-gsplit-dwarf', '--coverage');
    expect(r.extraOutputs).toEqual([
      { kind: 'dwo', path: 'out/a.dwo' },
      { kind: 'gcno', path: 'out/a.gcno' },
    ]);
    expect(r.keyCwd).toBe(true);
    expect(r.keyArgs).toContain('out/a.o');
  });

  it('puts cwd in the key for -g but not -g0', () => {
    expect(ok('-c', 'a.c', '-g').keyCwd).toBe(true);
    expect(ok('-c', 'a.c', '-g0').keyCwd).toBe(false);
    expect(ok('-c', 'a.c', '-gcc-toolchain', '/opt/gcc').keyCwd).toBe(false);
  });

  it('keys colour options (a bad one must fail as it does without kiln) but keeps them out of -E', () => {
    const never = ok('-c', 'a.c', '-fdiagnostics-color=never');
    expect(never.keyArgs).toContain('-fdiagnostics-color=never');
    expect(ok('-c', 'a.c', '-fdiagnostics-color=bogus').keyArgs).toContain('-fdiagnostics-color=bogus');
    expect(never.preprocessArgs).not.toContain('-fdiagnostics-color=never');
  });

  it('reads gcc long options as their short spellings', () => {
    const r = ok('--compile', 'a.c', '--output=obj/c.o', '--write-dependencies', '--debug');
    expect(r.output).toBe('obj/c.o');
    expect(r.depFile).toBe('obj/c.d');
    expect(r.keyCwd).toBe(true);
    expect(ok('-c', 'a.c', '--output', 'c.o').output).toBe('c.o');
    expect(ok('-c', 'a.c', '--include-directory=inc').includeDirs).toEqual(['inc']);
    expect(parse('-c', 'a.c', '--outp=c.o')).toEqual({
      cacheable: false,
      reason: 'unknown long option (--outp)',
    });
    expect(parse('--preprocess', 'a.c')).toEqual({ cacheable: false, reason: 'preprocessor only (-E)' });
    expect(ok('-c', 'a.c', '--sysroot=/sr', '--param=max-inline-insns-single=10').includeDirs).toEqual([
      '/sr',
    ]);
  });

  it('knows clang -gsplit-dwarf=split and =single', () => {
    expect(ok('-c', 'a.c', '-g', '-gsplit-dwarf=split').extraOutputs).toEqual([
      { kind: 'dwo', path: 'a.dwo' },
    ]);
    expect(ok('-c', 'a.c', '-g', '-gsplit-dwarf=single').extraOutputs).toEqual([]);
    expect(ok('-c', 'a.c', '-gsplit-dwarf', '-gno-split-dwarf').extraOutputs).toEqual([]);
  });

  it('keeps line markers in the -E run when the call has -P', () => {
    expect(ok('-c', 'a.c', '-P').preprocessArgs).toEqual(['a.c', '-E']);
    expect(ok('-c', 'a.c', '-Wp,-P').preprocessArgs).toEqual(['a.c', '-E']);
    expect(parse('-c', 'a.c', '-Wp,-P,-DX')).toEqual({
      cacheable: false,
      reason: '-P among other -Wp options',
    });
  });

  it('knows when the object records the command line', () => {
    expect(ok('-c', 'a.c', '-frecord-command-line').recordsCommandLine).toBe(true);
    expect(ok('-c', 'a.c', '-g', '-grecord-command-line').recordsCommandLine).toBe(true);
    expect(ok('-c', 'a.c', '-frecord-command-line', '-fno-record-command-line').recordsCommandLine).toBe(
      false,
    );
    expect(ok('-c', 'a.c', '-g').recordsCommandLine).toBe(false);
  });

  it('keys the files sanitizer and profile lists name, and the include directories', () => {
    fs.writeFileSync(path.join(cwd, 'ign.txt'), 'fun:f\n');
    const r = ok('-c', 'a.c', '-fsanitize-ignorelist=ign.txt', '-Iinc', '-isystem', 'sys', '-iquote', 'q');
    expect(r.keyFiles).toEqual([path.join(cwd, 'ign.txt')]);
    expect(r.includeDirs).toEqual(['inc', 'sys', 'q']);
    expect(ok('-c', 'a.c', '-B', 'tools/', '-Bmore').toolDirs).toEqual(['tools/', 'more']);
  });

  it('hashes profile data and the host CPU where they matter', () => {
    expect(ok('-c', 'a.c', '-fprofile-use=prof.gcda').keyFiles).toEqual([path.join(cwd, 'prof.gcda')]);
    expect(ok('-c', 'a.c', '-march=native').keyHostCpu).toBe(true);
  });

  it('caches preprocessed and plain assembler input without a preprocessor run', () => {
    expect(ok('-c', 'a.i').needsPreprocessor).toBe(false);
    expect(ok('-c', 'plain.s').needsPreprocessor).toBe(false);
    expect(ok('-c', 'a.S').needsPreprocessor).toBe(true);
  });

  it('expands response files, quotes and all', () => {
    fs.writeFileSync(path.join(cwd, 'args.rsp'), '-c "my file.c" -DNAME=\'a b\' -o out\\ dir/x.o\n');
    const r = ok('@args.rsp');
    expect(r.input).toBe('my file.c');
    expect(r.output).toBe('out dir/x.o');
    expect(r.args).toEqual(['-c', 'my file.c', '-DNAME=a b', '-o', 'out dir/x.o']);
  });

  it('accepts -Xclang options that are not plugins', () => {
    expect(ok('-c', 'a.c', '-Xclang', '-fno-pch-timestamp').input).toBe('a.c');
  });
});

describe('splitResponseFile', () => {
  it('splits like libiberty', () => {
    expect(splitResponseFile(' a  "b c"\n\'d"e\' f\\ g ""')).toEqual(['a', 'b c', 'd"e', 'f g', '']);
  });
});
