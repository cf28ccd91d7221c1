/**
 * Classes where kiln returned a wrong result (or cached what it should refuse) when this suite was
 * written (148 of these scenarios failed before the fixes). Each expectation is the policy kiln now follows.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { acrossConfigs, type Config, type Expect, FAILS, type Scenario } from './scenario.js';
import { ALL_COMPILERS, C_COMPILERS, compileArgs, src, useK } from './scenarios-holding.js';
import { project, TOOLCHAINS } from './scenarios-mutations.js';

/** The real file behind a program found in PATH ('' when it is not installed: those scenarios skip). */
function realProgram(name: string): string {
  const found = spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' }).stdout.trim();
  return found ? fs.realpathSync(found) : '';
}

const warn = 'int f(void) { int unused; return 0; }\n';
/** Calls g() from h.h, so that h.h has code in the object (and a file entry in its debug info). */
const useG = '#include "h.h"\nint f(int x) { return g(x) * K; }\n';
const gHeader = (k: string) => `#define K 1 /* ${k} */\nstatic inline int g(int y) { return y + 1; }\n`;
/** A comment-only edit misses in every mode (kiln keys the content of every file -E read). */
const comment: Expect = 'miss';
const script = (body: string) => ({ content: `#!/bin/sh\n${body}\n`, mode: 0o755 });

/** 1. Diagnostics colour is part of what the user sees. */
function colour(): Scenario[] {
  const out: Scenario[] = [];
  for (const cc of ALL_COMPILERS) {
    out.push({
      name: `${cc}: colour always, then never, then unset`,
      compiler: cc,
      files: { [src(cc)]: warn },
      args: compileArgs(cc, '-Wall', '-fdiagnostics-color=always'),
      change: { replaceArg: '-fdiagnostics-color=always', with: '-fdiagnostics-color=never' },
      expect: 'miss',
      next: [{ change: { dropArgs: ['-fdiagnostics-color=never'] }, expect: 'miss' }],
    });
    out.push({
      name: `${cc}: colour unset, then always`,
      compiler: cc,
      files: { [src(cc)]: warn },
      args: compileArgs(cc, '-Wall'),
      change: { addArgs: ['-fdiagnostics-color=always'] },
      expect: 'miss',
    });
  }
  for (const cc of ['gcc', 'g++']) {
    for (const bad of ['-fcolor-diagnostics', '-fdiagnostics-color=bogus'])
      out.push({
        name: `${cc}: ${bad} after a plain fill`,
        compiler: cc,
        files: { [src(cc)]: warn },
        args: compileArgs(cc, '-Wall'),
        change: { addArgs: [bad] },
        expect: 'failed',
      });
  }
  for (const cc of C_COMPILERS)
    out.push({
      name: `${cc}: a raw ESC byte in a quoted source line`,
      compiler: cc,
      files: { 'a.c': 'int f(void) { const char *s = "\x1b[31mred\x1b[m"; return 0; }\n' },
      args: compileArgs(cc, '-Wall'),
      change: { touch: 'a.c' },
      expect: 'hit',
    });
  return out;
}

/** 2. One clang binary, two drivers: clang++ compiles a .c file as C++. */
function clangDrivers(): Scenario[] {
  const clang = realProgram('clang');
  return [
    {
      name: 'clang, then clang++ on a .c file',
      compiler: 'clang',
      files: { 'a.c': 'int f(int x) { return x; }\n' },
      args: compileArgs('clang'),
      change: { compiler: 'clang++' },
      expect: 'miss',
      needs: ['clang++'],
    },
    {
      name: 'clang as ./cc, then as ./c++ (links to one binary)',
      compiler: './cc',
      files: { 'a.c': 'int f(int x) { return x; }\n', cc: { symlink: clang }, 'c++': { symlink: clang } },
      args: compileArgs('clang'),
      change: { compiler: './c++' },
      expect: 'miss',
      needs: ['clang'],
    },
  ];
}

/** 3. What the preprocessed text does not show: diagnostics, comments, columns, file digests. */
function preprocessorBlindSpots(): Scenario[] {
  const out: Scenario[] = [];
  const all = (s: Scenario) => acrossConfigs(s);
  for (const cc of C_COMPILERS) {
    out.push(
      ...all({
        name: `${cc}: #warning text in a header`,
        compiler: cc,
        files: { 'a.c': useK(), 'h.h': '#warning "first"\n#define K 1\n' },
        args: compileArgs(cc),
        change: { edit: 'h.h', from: 'first', to: 'second' },
        expect: 'miss',
        next: [{ change: { edit: 'h.h', from: 'second', to: 'third' }, expect: 'miss' }],
      }),
      ...all({
        name: `${cc}: -Wundef names another macro`,
        compiler: cc,
        files: { 'a.c': useK(), 'h.h': '#if FOO\n#endif\n#define K 1\n' },
        args: compileArgs(cc, '-Wundef'),
        change: { edit: 'h.h', from: 'FOO', to: 'BAR' },
        expect: 'miss',
        next: [{ change: { edit: 'h.h', from: 'BAR', to: 'BAZ' }, expect: 'miss' }],
      }),
      ...all({
        name: `${cc}: -Wunused-macros, macro renamed`,
        compiler: cc,
        files: { 'a.c': '#define UNUSED_A 1\nint f(int x) { return x; }\n' },
        args: compileArgs(cc, '-Wunused-macros'),
        change: { edit: 'a.c', from: 'UNUSED_A', to: 'UNUSED_B' },
        expect: 'miss',
      }),
      ...all({
        name: `${cc}: comment edit on a line a warning quotes`,
        compiler: cc,
        files: { 'a.c': 'int f(void) { int unused; /* one */ return 0; }\n' },
        args: compileArgs(cc, '-Wall'),
        change: { edit: 'a.c', from: 'one', to: 'two' },
        expect: 'miss',
      }),
      ...all({
        name: `${cc}: header comment edit on a line a warning quotes`,
        compiler: cc,
        files: {
          'a.c': useG,
          'h.h': '#define K 1\nstatic inline int g(int y) { int unused_h; return y; } /* one */\n',
        },
        args: compileArgs(cc, '-Wall'),
        change: { edit: 'h.h', from: 'one', to: 'two' },
        expect: 'miss',
        next: [{ change: { edit: 'h.h', from: 'two', to: 'three' }, expect: 'miss' }],
      }),
      ...all({
        name: `${cc}: whitespace between tokens with -g`,
        compiler: cc,
        files: { 'a.c': useG, 'h.h': gHeader('note') },
        args: compileArgs(cc, '-g'),
        change: { edit: 'h.h', from: 'int y', to: 'int  y' },
        expect: 'miss',
        next: [{ change: { edit: 'h.h', from: 'int  y', to: 'int   y' }, expect: 'miss' }],
      }),
    );
  }
  out.push(
    // gcc only: clang 14 takes no comment for a fallthrough annotation, so both states fail there.
    ...all({
      name: 'gcc: fallthrough comment removed under -Werror',
      compiler: 'gcc',
      files: {
        'a.c':
          'int f(int x) {\n  switch (x) {\n  case 1:\n    x++;\n    /* fallthrough */\n  case 2:\n    return x;\n  }\n  return 0;\n}\n',
      },
      args: compileArgs('gcc', '-Werror=implicit-fallthrough'),
      change: { edit: 'a.c', from: '/* fallthrough */', to: '/* nothing */' },
      expect: 'failed',
    }),
    ...all({
      name: 'clang: -g3, macro comment edits',
      compiler: 'clang',
      files: { 'a.c': useG, 'h.h': gHeader('one') },
      args: compileArgs('clang', '-g3'),
      change: { edit: 'h.h', from: 'one', to: 'two' },
      expect: 'miss',
      next: [{ change: { edit: 'h.h', from: 'two', to: 'three' }, expect: 'miss' }],
    }),
    ...all({
      // Control: gcc records neither comments nor file digests, so the object does not change.
      name: 'gcc: -g3, macro comment edit',
      compiler: 'gcc',
      files: { 'a.c': useG, 'h.h': gHeader('one') },
      args: compileArgs('gcc', '-g3'),
      change: { edit: 'h.h', from: 'one', to: 'two' },
      expect: comment,
    }),
  );
  for (const cc of ['clang', 'clang++'])
    out.push(
      ...all({
        name: `${cc}: -g (DWARF 5 MD5), two header comment edits`,
        compiler: cc,
        files: { [src(cc)]: useG, 'h.h': gHeader('one') },
        args: compileArgs(cc, '-g'),
        change: { edit: 'h.h', from: 'one', to: 'two' },
        expect: 'miss',
        next: [{ change: { edit: 'h.h', from: 'two', to: 'three' }, expect: 'miss' }],
      }),
    );
  return out;
}

/** 4. The same directory spelled through a symlink: -g records the spelling (PWD). */
function symlinkedCwd(): Scenario[] {
  return ALL_COMPILERS.map((cc) => ({
    name: `${cc}: -g from a symlinked working directory`,
    compiler: cc,
    files: { [`real/${src(cc)}`]: 'int f(int x) { return x; }\n', link: { symlink: 'real' } },
    args: compileArgs(cc, '-g'),
    cwd: 'real',
    change: { cwd: 'link' },
    expect: 'miss',
    next: [{ change: { cwd: 'real' }, expect: 'hit' }],
  }));
}

/** 5. Files the assembler reads: no -E run shows them. */
function assemblerIncludes(): Scenario[] {
  const out: Scenario[] = [];
  const refuse = { initial: 'uncached', expect: 'uncached' } as const;
  for (const cc of C_COMPILERS) {
    out.push(
      {
        name: `${cc}: .S with .incbin`,
        compiler: cc,
        files: { 'a.S': '\t.data\n\t.incbin "data.bin"\n', 'data.bin': 'one\n' },
        args: ['-c', 'a.S', '-o', 'a.o'],
        change: { write: 'data.bin', content: 'two\n' },
        ...refuse,
      },
      {
        name: `${cc}: .S with .include`,
        compiler: cc,
        files: { 'a.S': '\t.include "x.inc"\n', 'x.inc': '\t.data\n\t.long 1\n' },
        args: ['-c', 'a.S', '-o', 'a.o'],
        change: { edit: 'x.inc', from: '.long 1', to: '.long 2' },
        ...refuse,
      },
      {
        name: `${cc}: C inline asm with .incbin`,
        compiler: cc,
        files: {
          'a.c': 'asm(".data\\n.incbin \\"data.bin\\"\\n.text");\nint f(void) { return 0; }\n',
          'data.bin': 'one\n',
        },
        args: compileArgs(cc),
        change: { write: 'data.bin', content: 'two\n' },
        ...refuse,
      },
      {
        name: `${cc}: .s with "nop ; .incbin" on one line`,
        compiler: cc,
        files: { 'a.s': '\t.data\n\tnop ; .incbin "data.bin"\n', 'data.bin': 'one\n' },
        args: ['-c', 'a.s', '-o', 'a.o'],
        change: { write: 'data.bin', content: 'two\n' },
        ...refuse,
      },
      {
        name: `${cc}: .s with a label before .incbin`,
        compiler: cc,
        files: { 'a.s': '\t.data\nblob: .incbin "data.bin"\n', 'data.bin': 'one\n' },
        args: ['-c', 'a.s', '-o', 'a.o'],
        change: { write: 'data.bin', content: 'two\n' },
        ...refuse,
      },
    );
  }
  out.push({
    name: 'g++: C++ inline asm with .incbin',
    compiler: 'g++',
    files: {
      'a.cpp': 'asm(".data\\n.incbin \\"data.bin\\"\\n.text");\nint f() { return 0; }\n',
      'data.bin': 'one\n',
    },
    args: compileArgs('g++'),
    change: { write: 'data.bin', content: 'two\n' },
    ...refuse,
  });
  return out;
}

/** 6. Options that record the command line, and dependency options gcc rejects alone. */
function commandLine(): Scenario[] {
  const out: Scenario[] = [];
  const cases: [string, string, string[]][] = [
    ['clang', '-frecord-command-line', ['-frecord-command-line']],
    ['clang', '-grecord-command-line', ['-g', '-grecord-command-line']],
    ['clang++', '-frecord-command-line', ['-frecord-command-line']],
    ['gcc', '-frecord-gcc-switches', ['-frecord-gcc-switches']],
    ['g++', '-frecord-gcc-switches', ['-frecord-gcc-switches']],
  ];
  for (const [cc, label, opts] of cases)
    out.push(
      ...acrossConfigs(
        {
          name: `${cc}: ${label}, object as plain on a cold miss`,
          compiler: cc,
          files: { [src(cc)]: 'int f(int x) { return x * K; }\n' },
          args: compileArgs(cc, ...opts, '-DK=1'),
          change: { replaceArg: '-DK=1', with: '-DK=2' },
          expect: 'miss',
        },
        ['default', 'no-depend'] satisfies Config[],
      ),
    );
  for (const opts of [['-MF', 'x.d'], ['-MT', 't'], ['-MQ', 't'], ['-MP']])
    out.push({
      name: `gcc: ${opts.join(' ')} without -MD`,
      compiler: 'gcc',
      files: { 'a.c': useK(), 'h.h': '#define K 1\n' },
      args: compileArgs('gcc', ...opts),
      initial: 'uncached',
      change: { edit: 'h.h', from: 'K 1', to: 'K 2' },
      expect: 'uncached',
    });
  return out;
}

/** 7. The compiler is more than its driver: the assembler it runs, wrappers, its install. */
function compilerIdentity(): Scenario[] {
  const as = realProgram('as');
  const gcc = realProgram('gcc');
  const fakeAs = script(`exec ${as} --defsym KILN_FAKE_AS=1 "$@"`);
  const files = { 'a.c': 'int f(int x) { return x; }\n', 'bin/.keep': '' };
  return [
    {
      name: 'gcc: a fake as first in PATH',
      compiler: 'gcc',
      files: { ...files, 'bin/as': fakeAs },
      args: compileArgs('gcc'),
      change: { env: { PATH: '{dir}/bin:{PATH}' } },
      expect: 'miss',
    },
    {
      name: 'gcc: a fake as dropped into a dir already in PATH',
      compiler: 'gcc',
      files,
      args: compileArgs('gcc'),
      env: { PATH: '{dir}/bin:{PATH}' },
      change: [
        { write: 'bin/as', content: fakeAs.content },
        { chmod: 'bin/as', mode: 0o755 },
      ],
      expect: 'miss',
    },
    ...C_COMPILERS.map(
      (cc): Scenario => ({
        name: `${cc}: a fake as dropped into the -B dir`,
        compiler: cc,
        files,
        args: compileArgs(cc, '-B{dir}/bin/', ...(cc === 'clang' ? ['-fno-integrated-as'] : [])),
        change: [
          { write: 'bin/as', content: fakeAs.content },
          { chmod: 'bin/as', mode: 0o755 },
        ],
        expect: 'miss',
      }),
    ),
    {
      name: 'gcc: a fake as dropped into COMPILER_PATH',
      compiler: 'gcc',
      files,
      args: compileArgs('gcc'),
      env: { COMPILER_PATH: '{dir}/bin' },
      change: [
        { write: 'bin/as', content: fakeAs.content },
        { chmod: 'bin/as', mode: 0o755 },
      ],
      expect: 'miss',
    },
    {
      // kiln caches compilers it recognises by name (gcc, cc, clang…): this one it runs as is.
      name: 'cc-wrap script retargeted from gcc to clang',
      compiler: './cc-wrap',
      files: { 'a.c': 'int f(int x) { return x; }\n', 'cc-wrap': script('exec gcc "$@"') },
      args: compileArgs('gcc'),
      initial: 'uncached',
      change: { write: 'cc-wrap', content: '#!/bin/sh\nexec clang "$@"\n' },
      expect: 'uncached',
      needs: ['clang'],
    },
    {
      // Control: a name kiln recognises, and the script's bytes change.
      name: 'wrap-cc script retargeted from gcc to clang',
      compiler: './wrap-cc',
      files: { 'a.c': 'int f(int x) { return x; }\n', 'wrap-cc': script('exec gcc "$@"') },
      args: compileArgs('gcc'),
      change: { write: 'wrap-cc', content: '#!/bin/sh\nexec clang "$@"\n' },
      expect: 'miss',
      needs: ['clang'],
    },
    {
      name: 'wrap-cc script choosing the compiler from the environment',
      compiler: './wrap-cc',
      files: { 'a.c': 'int f(int x) { return x; }\n', 'wrap-cc': script('exec "$REAL_CC" "$@"') },
      args: compileArgs('gcc'),
      env: { REAL_CC: 'gcc' },
      change: { env: { REAL_CC: 'clang' } },
      expect: 'miss',
      needs: ['clang'],
    },
    {
      name: 'gcc copied where it cannot find cc1',
      compiler: 'gcc',
      files: { 'a.c': 'int f(int x) { return x; }\n', 'reloc/.keep': '' },
      setup: { run: ['cp', gcc, 'reloc/gcc'] },
      args: compileArgs('gcc'),
      change: { compiler: './reloc/gcc' },
      expect: FAILS,
    },
  ];
}

/** 8. -isystem through a symlink that is retargeted. */
function isystemSymlink(): Scenario[] {
  const out: Scenario[] = [];
  for (const cc of C_COMPILERS) {
    const files = {
      'a.c': '#include <h.h>\nint f(struct S *s) { return s->a * K; }\n',
      'inc/v1/h.h': 'struct S { int a; };\n#define K 1\n',
      'inc/v2/h.h': 'struct S { int a; };\n#define K 2\n',
      'inc/current': { symlink: 'v1' },
    };
    out.push(
      ...acrossConfigs({
        name: `${cc}: -isystem symlink retargeted, other content`,
        compiler: cc,
        files,
        args: compileArgs(cc, '-g', '-isystem', 'inc/current'),
        change: { symlink: 'inc/current', target: 'v2' },
        expect: 'miss',
      }),
      // gcc prints a system header by its real path when that is shorter than the path as spelled,
      // so the debug info of an absolute, longer spelling names v1 or v2: retargeting it must miss
      // even when the header's content does not change.
      ...acrossConfigs({
        name: `${cc}: absolute -isystem symlink retargeted, same content`,
        compiler: cc,
        files: {
          'a.c': files['a.c'],
          'sdk/v1/include/h.h': files['inc/v1/h.h'],
          'sdk/v2/include/h.h': files['inc/v1/h.h'],
          'sdk/current-release': { symlink: 'v1' },
        },
        args: compileArgs(cc, '-g', '-isystem', '{dir}/sdk/current-release/include'),
        change: { symlink: 'sdk/current-release', target: 'v2' },
        expect: 'miss',
      }),
      {
        // Both compilers record the include path as spelled: the objects are the same, a hit is right.
        name: `${cc}: -isystem symlink retargeted, same content elsewhere`,
        compiler: cc,
        files: { ...files, 'inc/v2/h.h': files['inc/v1/h.h'] },
        args: compileArgs(cc, '-g', '-isystem', 'inc/current'),
        change: { symlink: 'inc/current', target: 'v2' },
        expect: ['hit', 'miss'],
      },
    );
  }
  return out;
}

/** 9. A precompiled header found beside pch.h. */
function pch(): Scenario[] {
  return (['gcc', 'g++'] as const).map((cc) => {
    const lang = cc === 'gcc' ? 'c-header' : 'c++-header';
    return {
      name: `${cc}: pch.h.gch rebuilt from a changed pch.h`,
      compiler: cc,
      files: { [src(cc)]: '#include "pch.h"\nint f(int x) { return x * K; }\n', 'pch.h': '#define K 1\n' },
      setup: { run: [cc, '-x', lang, 'pch.h', '-o', 'pch.h.gch'] },
      args: compileArgs(cc),
      initial: 'uncached',
      change: [
        { edit: 'pch.h', from: 'K 1', to: 'K 2' },
        { run: [cc, '-x', lang, 'pch.h', '-o', 'pch.h.gch'] },
      ],
      expect: 'uncached',
    };
  });
}

/**
 * What the preprocessor proper takes to write a depfile. (`-Xpreprocessor -MD -Xpreprocessor -MF
 * -Xpreprocessor x.d` is rejected by both compilers: scenarios-holding.ts has it.)
 */
const xpreprocessorDepfile: Record<(typeof C_COMPILERS)[number], string[]> = {
  gcc: ['-Xpreprocessor', '-MD', '-Xpreprocessor', 'x.d'],
  clang: [
    '-Xpreprocessor',
    '-dependency-file',
    '-Xpreprocessor',
    'x.d',
    '-Xpreprocessor',
    '-MT',
    '-Xpreprocessor',
    'a.o',
  ],
};

/** 10. Driver spellings kiln's parser does not know. */
function driverSpellings(): Scenario[] {
  const out: Scenario[] = [];
  const kChange = { replaceArg: '-DK=1', with: '-DK=2' } as const;
  const body = 'int f(int x) { return x * K; }\n';
  for (const cc of C_COMPILERS) {
    out.push(
      {
        name: `${cc}: --debug in another directory`,
        compiler: cc,
        files: { 'one/a.c': body, 'two/a.c': body },
        args: compileArgs(cc, '--debug', '-DK=1'),
        cwd: 'one',
        change: { cwd: 'two' },
        expect: 'miss',
      },
      {
        name: `${cc}: --output=c.o`,
        compiler: cc,
        files: { 'a.c': body },
        args: ['-DK=1', '-c', 'a.c', '--output=c.o'],
        change: kChange,
        expect: 'miss',
      },
      {
        name: `${cc}: --output c.o`,
        compiler: cc,
        files: { 'a.c': body },
        args: ['-DK=1', '-c', 'a.c', '--output', 'c.o'],
        change: kChange,
        expect: 'miss',
      },
      {
        name: `${cc}: --write-dependencies, header edited`,
        compiler: cc,
        files: { 'a.c': useK(), 'h.h': '#define K 1\n' },
        args: compileArgs(cc, '--write-dependencies'),
        change: { edit: 'h.h', from: 'K 1', to: 'K 2' },
        expect: 'miss',
      },
      {
        name: `${cc}: a depfile through -Xpreprocessor`,
        compiler: cc,
        files: { 'a.c': useK(), 'h.h': '#define K 1\n' },
        args: compileArgs(cc, ...xpreprocessorDepfile[cc]),
        initial: 'uncached',
        change: { edit: 'h.h', from: 'K 1', to: 'K 2' },
        expect: 'uncached',
      },
    );
  }
  for (const mode of ['split', 'single'])
    out.push({
      name: `clang: -g -gsplit-dwarf=${mode}, header edited`,
      compiler: 'clang',
      files: { 'a.c': useK(), 'h.h': '#define K 1\n' },
      args: compileArgs('clang', '-g', `-gsplit-dwarf=${mode}`),
      change: { edit: 'h.h', from: 'K 1', to: 'K 2' },
      expect: 'miss',
    });
  return out;
}

/** 11. Files named by options that only the compiler reads. */
function optionFiles(): Scenario[] {
  // Memory accesses, so that the sanitizer's instrumentation differs per function.
  const body = 'int f(int *p) { return *p + 1; }\nint g(int *p) { return *p - 1; }\n';
  return [
    {
      name: 'clang: -fsanitize-ignorelist edited twice',
      compiler: 'clang',
      files: { 'a.c': body, 'ign.txt': 'fun:f\n' },
      args: compileArgs('clang', '-fsanitize=address', '-fsanitize-ignorelist=ign.txt'),
      change: { write: 'ign.txt', content: 'fun:g\n' },
      expect: 'miss',
      next: [{ change: { write: 'ign.txt', content: 'fun:*\n' }, expect: 'miss' }],
    },
    {
      name: 'clang: -fprofile-list edited twice',
      compiler: 'clang',
      files: { 'a.c': body, 'list.txt': 'fun:f\n' },
      args: compileArgs('clang', '-fprofile-instr-generate', '-fprofile-list=list.txt'),
      change: { write: 'list.txt', content: 'fun:g\n' },
      expect: 'miss',
      next: [{ change: { write: 'list.txt', content: 'fun:*\n' }, expect: 'miss' }],
    },
  ];
}

/** 12. "include/../config.h" where include is a symlink: the kernel resolves .. after the link. */
function dotDotThroughSymlink(): Scenario[] {
  return C_COMPILERS.flatMap((cc) =>
    acrossConfigs({
      name: `${cc}: include/../config.h through a symlinked dir`,
      compiler: cc,
      files: {
        'a.c': '#include "include/../config.h"\nint k = K;\n',
        'config.h': '#define K 100\n',
        'real/config.h': '#define K 1\n',
        'real/sub/.keep': '',
        include: { symlink: 'real/sub' },
      },
      args: compileArgs(cc),
      change: { edit: 'real/config.h', from: 'K 1', to: 'K 2' },
      expect: 'miss',
    }),
  );
}

/** 13. Assorted: -P, plugins, env the compilers read, time macros, pragmas, outputs. */
function assorted(): Scenario[] {
  const out: Scenario[] = [];
  const hEdit = { edit: 'h.h', from: 'K 1', to: 'K 2' } as const;
  for (const cc of C_COMPILERS) {
    for (const p of [['-P'], ['-Wp,-P']])
      out.push(
        ...acrossConfigs({
          name: `${cc}: ${p[0]}, header edited`,
          compiler: cc,
          files: { 'a.c': useK(), 'h.h': '#define K 1\n' },
          args: compileArgs(cc, ...p),
          change: hEdit,
          expect: 'miss',
          next: [{ change: { edit: 'h.h', from: 'K 2', to: 'K 3' }, expect: 'miss' }],
        }),
      );
    out.push(
      ...acrossConfigs({
        name: `${cc}: __TIMESTAMP__ in a header under SOURCE_DATE_EPOCH, header touched`,
        compiler: cc,
        files: {
          'a.c': '#include "ts.h"\nconst char *t(void) { return ts; }\n',
          'ts.h': 'static const char *ts = __TIMESTAMP__;\n',
        },
        args: compileArgs(cc),
        env: { SOURCE_DATE_EPOCH: '1000000000' },
        change: { touch: 'ts.h', mtime: 1_200_000_000 },
        expect: 'miss',
      }),
      {
        name: `${cc}: #pragma GCC dependency on a file made newer`,
        compiler: cc,
        files: {
          'a.c': '#pragma GCC dependency "dep.txt"\nint f(int x) { return x; }\n',
          'dep.txt': { content: 'x\n', mtime: 1_000_000_000 },
        },
        args: compileArgs(cc),
        change: { touch: 'dep.txt' },
        expect: 'miss',
      },
      {
        name: `${cc}: output path is a symlink`,
        compiler: cc,
        files: {
          'a.c': 'int f(int x) { return x * K; }\n',
          'out/.keep': '',
          'c.o': { symlink: 'out/real.o' },
        },
        args: ['-DK=1', '-c', 'a.c', '-o', 'c.o'],
        change: { replaceArg: '-DK=1', with: '-DK=2' },
        expect: 'miss',
      },
      {
        name: `${cc}: outputs under umask 077`,
        compiler: cc,
        files: { 'a.c': 'int f(int x) { return x * K; }\n' },
        args: compileArgs(cc, '-MD', '-DK=1'),
        umask: 0o077,
        change: { replaceArg: '-DK=1', with: '-DK=2' },
        expect: 'miss',
      },
      {
        name: `${cc}: .i compiled after the source its line markers name changed`,
        compiler: cc,
        files: { 'a.c': 'int f(void) { int unused; return 0; } /* one */\n' },
        setup: { run: [cc, '-E', 'a.c', '-o', 'a.i'] },
        args: ['-Wall', '-c', 'a.i', '-o', 'a.o'],
        change: { edit: 'a.c', from: 'one', to: 'two' },
        // clang quotes the line from the .i itself: the unchanged .i is a correct hit.
        expect: cc === 'gcc' ? 'miss' : 'hit',
      },
    );
  }
  out.push(
    {
      name: 'gcc: GCC_EXTRA_DIAGNOSTIC_OUTPUT=fixits-v2 with a fix-it',
      compiler: 'gcc',
      files: { 'a.c': 'int f(void) { printf("x"); return 0; }\n' },
      args: compileArgs('gcc'),
      change: { env: { GCC_EXTRA_DIAGNOSTIC_OUTPUT: 'fixits-v2' } },
      expect: 'miss',
      next: [{ change: { env: { GCC_EXTRA_DIAGNOSTIC_OUTPUT: undefined } }, expect: 'hit' }],
    },
    {
      name: 'clang: -fpass-plugin',
      compiler: 'clang',
      files: { 'a.c': 'int f(int x) { return x * K; }\n', 'p.c': 'int plugin_data;\n' },
      setup: { run: ['clang', '-shared', '-fPIC', 'p.c', '-o', 'x.so'] },
      args: compileArgs('clang', '-fpass-plugin=./x.so', '-DK=1'),
      initial: 'uncached',
      change: { replaceArg: '-DK=1', with: '-DK=2' },
      expect: 'uncached',
    },
    {
      name: 'clang: -ivfsoverlay',
      compiler: 'clang',
      files: {
        'a.c': '#include "virt/v.h"\nint k = K;\n',
        'h1.h': '#define K 1\n',
        'h2.h': '#define K 2\n',
        'vfs.yaml':
          "{ 'version': 0, 'roots': [ { 'name': '{dir}/virt', 'type': 'directory', 'contents': [ { 'name': 'v.h', 'type': 'file', 'external-contents': '{dir}/h1.h' } ] } ] }\n",
      },
      args: compileArgs('clang', '-ivfsoverlay', 'vfs.yaml'),
      initial: 'uncached',
      change: { edit: 'vfs.yaml', from: 'h1.h', to: 'h2.h' },
      expect: 'uncached',
    },
    {
      // clang 14 ignores SOURCE_DATE_EPOCH: __TIME__ is the wall clock. Each compile starts early in
      // a second, so the plain and kiln compiles of one step agree.
      name: 'clang: __TIME__ under SOURCE_DATE_EPOCH, a second later',
      compiler: 'clang',
      files: {
        'a.c': useK('t.h'),
        't.h':
          '#define K 1\nstatic const char *stamp = __DATE__ " " __TIME__;\nconst char *s(void) { return stamp; }\n',
      },
      args: compileArgs('clang'),
      env: { SOURCE_DATE_EPOCH: '1000000000' },
      setup: () => nextSecond(),
      // Never a direct hit, and depend mode stores nothing: the second call misses too (or hits
      // through preprocessor mode when the clock has not moved on).
      initialWarm: ['miss', 'hit'],
      change: () => nextSecond(),
      expect: 'miss',
      expectWarm: ['miss', 'hit'],
    },
  );
  return out;
}

/** Waits for the start of the next wall-clock second, less the settle time kiln needs. */
function nextSecond(): void {
  const wait = 1000 - (Date.now() % 1000);
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, wait + 5);
}

/** 14. Headers found or not found by the current directory and the file system. */
function headerSearch(): Scenario[] {
  const out: Scenario[] = [];
  for (const cc of C_COMPILERS) {
    const hasInclude = '#if __has_include("x.h")\n#include "x.h"\n#else\n#define K 0\n#endif\nint k = K;\n';
    out.push(
      ...acrossConfigs({
        name: `${cc}: __has_include header removed`,
        compiler: cc,
        files: { 'a.c': hasInclude, 'x.h': '#define K 1\n' },
        args: compileArgs(cc),
        change: { remove: 'x.h' },
        expect: 'miss',
      }),
      ...acrossConfigs({
        name: `${cc}: __has_include header appears`,
        compiler: cc,
        files: { 'a.c': hasInclude },
        args: compileArgs(cc),
        change: { write: 'x.h', content: '#define K 1\n' },
        expect: 'miss',
      }),
      {
        name: `${cc}: second checkout shadows the -I header beside the source`,
        compiler: cc,
        files: {
          'c1/a.c': useK(),
          'c1/inc/h.h': '#define K 1\n',
          'c2/a.c': useK(),
          'c2/inc/h.h': '#define K 1\n',
          'c2/h.h': '#define K 2\n',
        },
        args: compileArgs(cc, '-Iinc'),
        cwd: 'c1',
        change: { cwd: 'c2' },
        expect: 'miss',
      },
    );
  }
  return out;
}

/** 15. Found while writing this suite. */
function foundHere(): Scenario[] {
  const out: Scenario[] = [
    {
      // kiln adds -fdiagnostics-color=always, which clang reports as unused on plain assembler.
      name: 'clang: .s edited',
      compiler: 'clang',
      files: { 'a.s': '\t.text\n\t.globl f\nf:\n\tmovl $1, %eax\n\tret\n' },
      args: ['-c', 'a.s', '-o', 'a.o'],
      change: { edit: 'a.s', from: '$1', to: '$2' },
      expect: 'miss',
    },
  ];
  // A header created in an -I dir searched before the one that held it: the manifest only checks
  // the headers the earlier compile read.
  for (const t of TOOLCHAINS)
    out.push(
      ...acrossConfigs({
        name: `${t.compiler}: new header shadows one in a later -I dir`,
        compiler: t.compiler,
        ...project(t),
        change: { write: 'inc0/cfg.h', content: '#define V 5\n' },
        expect: 'miss',
      }),
    );
  return out;
}

export const policyScenariosA = (): Scenario[] => [
  ...colour(),
  ...clangDrivers(),
  ...preprocessorBlindSpots(),
  ...symlinkedCwd(),
];

export const policyScenariosB = (): Scenario[] => [
  ...assemblerIncludes(),
  ...commandLine(),
  ...compilerIdentity(),
  ...isystemSymlink(),
  ...pch(),
];

export const policyScenariosC = (): Scenario[] => [
  ...driverSpellings(),
  ...optionFiles(),
  ...dotDotThroughSymlink(),
  ...assorted(),
  ...headerSearch(),
  ...foundHere(),
];
