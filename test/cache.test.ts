/**
 * The cache with real gcc and clang, through the real daemon and both thin clients: hits are
 * byte-identical to a plain compile, every input that matters makes a miss, and every output
 * (object, depfile, .dwo, .gcno, stdout, stderr, exit code) comes back on a hit.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { type ClientKind, KilnSandbox } from './helpers/kiln.js';
import { have } from './helpers/prereq.js';

const compilers = ['gcc', 'clang'].filter(have) as ('gcc' | 'clang')[];
let sb: KilnSandbox;
afterEach(() => sb?.dispose());

const SOURCE =
  '#include <stdio.h>\n#include "inc/config.h"\nint main(void) { printf("%d\\n", VALUE); return 0; }\n';

function project(s: KilnSandbox) {
  s.file('main.c', SOURCE);
  s.file('inc/config.h', '#define VALUE 42\n');
}

/** Compiles plainly (no kiln) to a reference object. */
function plain(s: KilnSandbox, cc: string, args: string[]): Buffer {
  const r = s.run([cc, ...args, '-o', 'plain.o']);
  expect(r.status, r.stderr).toBe(0);
  return s.read('plain.o');
}

describe.each(compilers)('%s', (cc) => {
  describe.each(['native', 'node'] as ClientKind[])('through the %s client', (kind) => {
    it('misses, then hits in direct mode with a byte-identical object', () => {
      sb = new KilnSandbox(kind);
      project(sb);
      const args = ['-c', 'main.c', '-O2', '-g'];
      const reference = plain(sb, cc, args);
      const first = sb.kiln([cc, ...args, '-o', 'main.o']);
      expect(first.status, first.stderr).toBe(0);
      expect(sb.read('main.o').equals(reference)).toBe(true);
      fs.rmSync(path.join(sb.work, 'main.o'));
      const second = sb.kiln([cc, ...args, '-o', 'main.o']);
      expect(second.status).toBe(0);
      expect(sb.read('main.o').equals(reference)).toBe(true);
      const { stats } = sb.stats();
      expect(stats).toMatchObject({ requests: 2, misses: 1, hitsDirect: 1, hitsPreprocessed: 0 });
    });
  });

  it('misses after a header edit and after a -D change, and hits each variant afterwards', () => {
    sb = new KilnSandbox();
    project(sb);
    const compile = (...extra: string[]) => {
      const r = sb.kiln([cc, '-c', 'main.c', '-o', 'main.o', ...extra]);
      expect(r.status, r.stderr).toBe(0);
      return sb.read('main.o');
    };
    const a = compile();
    sb.file('inc/config.h', '#define VALUE 43\n');
    const b = compile();
    expect(b.equals(a)).toBe(false);
    expect(b.equals(plain(sb, cc, ['-c', 'main.c']))).toBe(true);
    const c = compile('-DEXTRA=1');
    expect(sb.stats().stats).toMatchObject({ misses: 3, hitsDirect: 0 });
    sb.file('inc/config.h', '#define VALUE 42\n');
    expect(compile().equals(a)).toBe(true);
    expect(compile('-DEXTRA=1').equals(c)).toBe(false); // VALUE differs from when c was built
    expect(sb.stats().stats).toMatchObject({ misses: 4, hitsDirect: 1 });
  });

  it('writes the depfile on a hit, with the right target', () => {
    sb = new KilnSandbox();
    project(sb);
    fs.mkdirSync(path.join(sb.work, 'obj'));
    const cases = [
      ['-MD'],
      ['-MMD', '-MP'],
      ['-MD', '-MF', 'obj/custom.d', '-MT', 'my-target'],
      ['-MMD', '-MQ', 'target$with$dollars'],
    ];
    for (const deps of cases) {
      const depFile = deps.includes('-MF') ? 'obj/custom.d' : 'obj/main.d';
      const args = ['-c', 'main.c', '-o', 'obj/main.o', ...deps];
      expect(sb.run([cc, ...args]).status).toBe(0);
      const expected = sb.read(depFile).toString();
      fs.rmSync(path.join(sb.work, depFile));
      expect(sb.kiln([cc, ...args]).status).toBe(0); // miss
      expect(sb.read(depFile).toString()).toBe(expected);
      fs.rmSync(path.join(sb.work, depFile));
      expect(sb.kiln([cc, ...args]).status).toBe(0); // hit
      expect(sb.read(depFile).toString()).toBe(expected);
    }
    // The object path is the default target: a different -o must not get the old depfile.
    expect(sb.kiln([cc, '-c', 'main.c', '-o', 'obj/other.o', '-MD']).status).toBe(0);
    expect(sb.read('obj/other.d').toString()).toMatch(/^obj\/other\.o:/);
    expect(sb.stats().stats.hitsDirect).toBe(cases.length);
  });

  it('replays warnings on a hit and a -Werror failure every time', () => {
    sb = new KilnSandbox();
    sb.file('warn.c', 'int f(void) { int unused; return 0; }\n');
    const args = [cc, '-c', 'warn.c', '-Wall'];
    const expected = sb.run(args).stderr;
    expect(expected).toMatch(/unused/);
    expect(sb.kiln(args).stderr).toBe(expected);
    const hit = sb.kiln(args);
    expect(hit.stderr).toBe(expected);
    expect(hit.status).toBe(0);
    const plainFail = sb.run([...args, '-Werror']);
    for (let i = 0; i < 2; i++) {
      const r = sb.kiln([...args, '-Werror']);
      expect(r.status).toBe(plainFail.status);
      expect(r.stderr).toBe(plainFail.stderr);
    }
    expect(sb.stats().stats).toMatchObject({ misses: 1, hitsDirect: 1, compileFailed: 2 });
  });

  it('replays diagnostics as the compiler prints them to a pipe, with and without colour options', () => {
    sb = new KilnSandbox();
    sb.file('warn.c', 'int f(void) { int unused; return 0; }\n');
    const base = [cc, '-c', 'warn.c', '-Wall'];
    const plain = sb.run(base).stderr;
    expect(plain).toContain('unused');
    for (let i = 0; i < 2; i++) expect(sb.kiln(base).stderr).toBe(plain);
    const colorFlag = cc === 'gcc' ? '-fdiagnostics-color=always' : '-fcolor-diagnostics';
    const colored = sb.run([...base, colorFlag]).stderr;
    expect(colored).toContain('\u001b[');
    for (let i = 0; i < 2; i++) expect(sb.kiln([...base, colorFlag]).stderr).toBe(colored);
    // The colour option is in the key: the uncoloured entry is not replayed for it.
    expect(sb.stats().stats).toMatchObject({ requests: 4, misses: 2, hitsDirect: 2 });
  });

  it('leaves a call with diagnostics to a terminal to the client, and replays silent ones', () => {
    have('script');
    sb = new KilnSandbox();
    sb.file('warn.c', 'int f(void) { int unused; return 0; }\n');
    sb.file('quiet.c', 'int g(void) { return 0; }\n');
    // script(1) gives the compile a pseudo-terminal, as make in an interactive shell does.
    const onTty = (argv: string[]) =>
      sb.run(['script', '-qec', argv.map((a) => `'${a}'`).join(' '), '/dev/null']).stdout;
    const plain = onTty([cc, '-c', 'warn.c', '-Wall']);
    expect(plain).toContain('unused');
    for (let i = 0; i < 2; i++) expect(onTty([sb.client, cc, '-c', 'warn.c', '-Wall'])).toBe(plain);
    for (let i = 0; i < 2; i++) expect(onTty([sb.client, cc, '-c', 'quiet.c', '-Wall'])).toBe('');
    const s = sb.stats().stats;
    expect(s.nonCacheable['diagnostics for a terminal']).toBe(2);
    expect(s).toMatchObject({ misses: 1, hitsDirect: 1 });
  });

  it('caches -gsplit-dwarf .dwo and --coverage .gcno outputs', () => {
    sb = new KilnSandbox();
    project(sb);
    fs.mkdirSync(path.join(sb.work, 'out'));
    const outputs = ['out/m.o', 'out/m.dwo', 'out/m.gcno'];
    const args = [cc, '-c', 'main.c', '-o', 'out/m.o', '-g', '-gsplit-dwarf', '--coverage'];
    // Coverage stamps differ from one compile to the next, so the reference is kiln's own miss:
    // a hit must give back exactly the set of files that compile wrote.
    expect(sb.kiln(args).status).toBe(0);
    const missed = outputs.map((f) => sb.read(f));
    for (const f of outputs) fs.rmSync(path.join(sb.work, f));
    expect(sb.kiln(args).status).toBe(0);
    for (const [i, f] of outputs.entries()) expect(sb.read(f).equals(missed[i]!), f).toBe(true);
    expect(sb.stats().stats).toMatchObject({ misses: 1, hitsDirect: 1 });
    // Without coverage the split-DWARF pair is deterministic: compare with a plain compile.
    const dwarfArgs = ['-c', 'main.c', '-o', 'out/p.o', '-g', '-gsplit-dwarf'];
    expect(sb.run([cc, ...dwarfArgs]).status).toBe(0);
    const ref = [sb.read('out/p.o'), sb.read('out/p.dwo')];
    for (let i = 0; i < 2; i++) {
      fs.rmSync(path.join(sb.work, 'out/p.o'));
      fs.rmSync(path.join(sb.work, 'out/p.dwo'));
      expect(sb.kiln([cc, ...dwarfArgs]).status).toBe(0);
      expect([sb.read('out/p.o').equals(ref[0]!), sb.read('out/p.dwo').equals(ref[1]!)]).toEqual([
        true,
        true,
      ]);
    }
  });

  it('handles -include, -isystem, -I and response files', () => {
    sb = new KilnSandbox();
    sb.file('sys/lib.h', '#define LIB 1\n');
    sb.file('pre.h', '#define PRE 2\n');
    sb.file('inc/local.h', '#define LOCAL 3\n');
    sb.file('x.c', '#include <lib.h>\n#include "local.h"\nint v = LIB + PRE + LOCAL;\n');
    sb.file('args.rsp', '-c x.c -isystem sys -I inc -include pre.h');
    for (let i = 0; i < 2; i++) expect(sb.kiln([cc, '@args.rsp', '-o', 'x.o']).status).toBe(0);
    expect(sb.read('x.o').equals(plain(sb, cc, ['@args.rsp']))).toBe(true);
    sb.file('pre.h', '#define PRE 5\n'); // a forced include changed: must miss
    expect(sb.kiln([cc, '@args.rsp', '-o', 'x.o']).status).toBe(0);
    expect(sb.read('x.o').equals(plain(sb, cc, ['@args.rsp']))).toBe(true);
    expect(sb.stats().stats).toMatchObject({ misses: 2, hitsDirect: 1 });
  });

  it('compiles C++, assembler with cpp, and already preprocessed input', () => {
    sb = new KilnSandbox();
    sb.file('a.cpp', '#include <vector>\nint f() { std::vector<int> v{1,2,3}; return v.size(); }\n');
    sb.file('b.S', '#define RET ret\n.globl g\ng:\n  RET\n');
    sb.file('c.i', 'int h(void) { return 7; }\n');
    const cxx = cc === 'gcc' ? 'g++' : 'clang++';
    for (const [compiler, file] of [
      [cxx, 'a.cpp'],
      [cc, 'b.S'],
      [cc, 'c.i'],
    ] as const) {
      for (let i = 0; i < 2; i++) expect(sb.kiln([compiler, '-c', file, '-o', 'out.o']).status).toBe(0);
      expect(sb.read('out.o').equals(plain(sb, compiler, ['-c', file]))).toBe(true);
    }
    const { stats } = sb.stats();
    expect(stats.misses).toBe(3);
    expect(stats.hitsDirect + stats.hitsPreprocessed).toBe(3);
  });
});

describe('direct and preprocessor mode (gcc)', () => {
  it('a cold miss runs the compiler once, without a preprocessor pass, and a header edit then uses -E', () => {
    sb = new KilnSandbox();
    project(sb);
    const real = spawnSync('sh', ['-c', 'command -v gcc'], { encoding: 'utf8' }).stdout.trim();
    const bin = path.join(sb.dir, 'logbin');
    const log = path.join(sb.dir, 'calls.log');
    fs.mkdirSync(bin);
    fs.writeFileSync(path.join(bin, 'gcc'), `#!/bin/sh\necho "$*" >> ${log}\nexec ${real} "$@"\n`, {
      mode: 0o755,
    });
    const env = { env: { ...sb.env, PATH: `${bin}:${sb.env.PATH}` } };
    const calls = () =>
      fs
        .readFileSync(log, 'utf8')
        .trim()
        .split('\n')
        // The logging script is a compiler kiln cannot fingerprint by its file: it asks it for its
        // version and its programs (-###) on every call. Compiles and -E runs are what count here.
        .filter((l) => l !== '--version' && !l.endsWith(' -###'));
    for (const deps of [[], ['-MD'], ['-MMD']]) {
      fs.rmSync(log, { force: true });
      const args = ['gcc', '-c', 'main.c', '-o', 'main.o', ...deps];
      expect(sb.kiln(args, env).status).toBe(0);
      expect(sb.read('main.o').equals(plain(sb, 'gcc', ['-c', 'main.c']))).toBe(true);
      // -MMD leaves system headers out of the depfile, so kiln needs the preprocessor there.
      expect(calls().filter((c) => / -E( |$)/.test(` ${c}`)).length, deps.join()).toBe(
        deps[0] === '-MMD' ? 1 : 0,
      );
      fs.rmSync(log, { force: true });
      expect(sb.kiln(args, env).status).toBe(0); // direct hit: the compiler is not run at all
      expect(fs.existsSync(log) ? calls() : []).toEqual([]);
    }
    sb.file('inc/config.h', '#define VALUE 7\n');
    fs.rmSync(log, { force: true });
    expect(sb.kiln(['gcc', '-c', 'main.c', '-o', 'main.o'], env).status).toBe(0);
    expect(calls().some((c) => c.includes('-E'))).toBe(true); // a known manifest that no longer matches
    expect(sb.read('main.o').equals(plain(sb, 'gcc', ['-c', 'main.c']))).toBe(true);
    expect(sb.stats().stats).toMatchObject({ misses: 4, hitsDirect: 3 });
  });

  it('falls back to a preprocessor hit for the same files in another checkout, never for a comment edit', () => {
    sb = new KilnSandbox();
    for (const d of ['one', 'two', 'three']) {
      sb.file(`${d}/main.c`, SOURCE);
      sb.file(`${d}/inc/config.h`, '#define VALUE 3\n');
    }
    const build = (d: string) =>
      expect(sb.kiln(['gcc', '-c', 'main.c', '-Iinc'], { cwd: path.join(sb.work, d) }).status).toBe(0);
    // one: depend mode (no preprocessor key). two: seen elsewhere, so preprocessor mode, which
    // stores a result keyed by what cpp saw. three: a preprocessor hit.
    for (const d of ['one', 'two', 'three']) build(d);
    expect(sb.stats().stats).toMatchObject({ misses: 2, hitsPreprocessed: 1, hitsDirect: 0 });
    // A comment leaves cpp's output alone but can change the object (column info, warnings
    // quoting the line, -Wimplicit-fallthrough): it is a miss.
    sb.file('three/main.c', SOURCE.replace('int main(void) {', 'int main(void)/* a comment */{'));
    build('three');
    expect(sb.stats().stats).toMatchObject({ misses: 3, hitsPreprocessed: 1 });
  });

  it('uses preprocessor mode only when direct mode is off', () => {
    sb = new KilnSandbox('native', { KILN_DIRECT_MODE: 'false' });
    project(sb);
    for (let i = 0; i < 3; i++) expect(sb.kiln(['gcc', '-c', 'main.c']).status).toBe(0);
    expect(sb.stats().stats).toMatchObject({ misses: 1, hitsPreprocessed: 2, hitsDirect: 0 });
  });

  it('never direct-hits a file that uses __TIME__', () => {
    sb = new KilnSandbox();
    sb.file('t.c', 'const char *t = __TIME__;\n');
    for (let i = 0; i < 3; i++) expect(sb.kiln(['gcc', '-c', 't.c']).status).toBe(0);
    // All three went through the cache, each a miss or (same second) a preprocessor hit.
    const { stats } = sb.stats();
    expect(stats).toMatchObject({ requests: 3, hitsDirect: 0 });
    expect(stats.misses + stats.hitsPreprocessed).toBe(3);
    expect(stats.misses).toBeGreaterThanOrEqual(1);
  });

  it('does not trust a header modified just before the compile', () => {
    sb = new KilnSandbox();
    project(sb);
    sb.file('inc/config.h', '#define VALUE 7\n');
    const future = new Date(Date.now() + 60_000); // a clock-skewed (say NFS) file counts as new, too
    fs.utimesSync(path.join(sb.work, 'inc/config.h'), future, future);
    // Depend mode stores nothing it cannot trust; the calls after it take preprocessor mode.
    for (let i = 0; i < 3; i++) expect(sb.kiln(['gcc', '-c', 'main.c']).status).toBe(0);
    expect(sb.stats().stats).toMatchObject({ misses: 2, hitsPreprocessed: 1, hitsDirect: 0 });
  });

  it('keys on the environment that changes output, and on KILN_EXTRAFILES', () => {
    sb = new KilnSandbox();
    sb.file('d.c', 'int x;\n');
    sb.file('extra.txt', 'one');
    const env = (extra: NodeJS.ProcessEnv) => ({ env: { ...sb.env, ...extra } });
    expect(sb.kiln(['gcc', '-c', 'd.c'], env({ SOURCE_DATE_EPOCH: '1' })).status).toBe(0);
    expect(sb.kiln(['gcc', '-c', 'd.c'], env({ SOURCE_DATE_EPOCH: '2' })).status).toBe(0);
    expect(sb.kiln(['gcc', '-c', 'd.c'], env({ KILN_EXTRAFILES: 'extra.txt' })).status).toBe(0);
    sb.file('extra.txt', 'two');
    expect(sb.kiln(['gcc', '-c', 'd.c'], env({ KILN_EXTRAFILES: 'extra.txt' })).status).toBe(0);
    expect(sb.kiln(['gcc', '-c', 'd.c'], env({ KILN_EXTRAFILES: 'extra.txt' })).status).toBe(0);
    expect(sb.stats().stats).toMatchObject({ misses: 4, hitsDirect: 1 });
  });

  it('keeps direct hits for -I. in-source builds, and notices a header that shadows another', () => {
    sb = new KilnSandbox();
    const files = ['one', 'two', 'three'];
    sb.file('inc/common.h', '#define N 3\n');
    for (const f of files) sb.file(`${f}.c`, `#include "common.h"\nint ${f}(void) { return N; }\n`);
    const build = (...flags: string[]) => {
      for (const f of files) expect(sb.kiln(['gcc', ...flags, '-c', `${f}.c`]).status).toBe(0);
    };
    // Object writes change the working directory (automake's -I.) every time: still direct hits.
    build('-I.', '-Iinc');
    for (const f of files) fs.rmSync(path.join(sb.work, `${f}.o`));
    build('-I.', '-Iinc');
    expect(sb.stats().stats).toMatchObject({ misses: 3, hitsDirect: 3, hitsPreprocessed: 0 });
    // A file added to the stamped inc/ that no include could find first: still direct hits.
    sb.file('inc/.common.h.swp', 'an editor was here');
    build('-I.', '-Iinc');
    expect(sb.stats().stats).toMatchObject({ misses: 3, hitsDirect: 6, hitsPreprocessed: 0 });
    // A header added to an earlier directory that shadows the one the manifest names: no hit.
    sb.file('early/.keep', '');
    build('-Iearly', '-Iinc');
    sb.file('early/common.h', '#define N 5\n');
    build('-Iearly', '-Iinc');
    const s = sb.stats().stats;
    expect(s.hitsDirect).toBe(6);
    for (const f of files) {
      expect(sb.run(['gcc', '-Iearly', '-Iinc', '-c', `${f}.c`, '-o', 'ref.o']).status).toBe(0);
      expect(sb.read(`${f}.o`).equals(sb.read('ref.o')), f).toBe(true);
    }
  });

  it('puts the working directory in the key for -g but shares objects without it', () => {
    sb = new KilnSandbox();
    const dirs = ['one', 'two', 'three'];
    for (const d of dirs) sb.file(`${d}/s.c`, 'int s(void) { return 1; }\n');
    const build = (d: string, ...flags: string[]) =>
      expect(sb.kiln(['gcc', ...flags, '-c', 's.c'], { cwd: path.join(sb.work, d) }).status).toBe(0);
    // Without -g: one compiles (depend mode), two is seen elsewhere and stores a preprocessor-mode
    // result, three finds it.
    for (const d of dirs) build(d);
    expect(sb.stats().stats).toMatchObject({ misses: 2, hitsPreprocessed: 1, hitsDirect: 0 });
    expect(sb.read('three/s.o').equals(sb.read('one/s.o'))).toBe(true);
    for (const d of dirs) build(d, '-g');
    expect(sb.stats().stats).toMatchObject({ misses: 5, hitsPreprocessed: 1, hitsDirect: 0 });
    const two = sb.read('two/s.o');
    expect(sb.run(['gcc', '-g', '-c', 's.c', '-o', 'ref.o'], { cwd: path.join(sb.work, 'two') }).status).toBe(
      0,
    );
    expect(two.equals(sb.read('two/ref.o'))).toBe(true);
  });
});
