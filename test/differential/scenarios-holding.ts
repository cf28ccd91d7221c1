/**
 * Classes kiln gets right today: changes to arguments, headers reached every way the compilers
 * offer, depfile options, environment in the key, assembler, a cache shared by two daemons, and
 * calls kiln runs as they are.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { acrossConfigs, type Config, FAILS, type Scenario } from './scenario.js';

export const C_COMPILERS = ['gcc', 'clang'] as const;
export const ALL_COMPILERS = ['gcc', 'clang', 'g++', 'clang++'] as const;

/** The source file name for the compiler's language. */
export const src = (cc: string) => (cc.endsWith('++') ? 'a.cpp' : 'a.c');
export const compileArgs = (cc: string, ...extra: string[]) => [...extra, '-c', src(cc), '-o', 'a.o'];

/** A function using K from a header and W from the command line. */
export const useK = (header = 'h.h') => `#include "${header}"\nint f(int x) { return x * K; }\n`;

/** gcc can build 32-bit objects (cc1 is multilib; headers are not needed by these sources). */
export function m32Works(): boolean {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-m32-'));
  try {
    fs.writeFileSync(path.join(dir, 'a.c'), 'int f(void) { return 1; }\n');
    return spawnSync('gcc', ['-m32', '-c', 'a.c'], { cwd: dir, stdio: 'ignore' }).status === 0;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function argumentChanges(): Scenario[] {
  const out: Scenario[] = [];
  for (const cc of C_COMPILERS) {
    out.push({
      name: `${cc}: -D with a quoted string`,
      compiler: cc,
      files: { 'a.c': 'const char *s = STR;\n' },
      args: compileArgs(cc, '-DSTR="a b"'),
      change: { replaceArg: '-DSTR="a b"', with: '-DSTR="a c"' },
      expect: 'miss',
    });
    out.push({
      name: `${cc}: -Wp,-D value`,
      compiler: cc,
      files: { 'a.c': 'int f(int x) { return x * K; }\n' },
      args: compileArgs(cc, '-Wp,-DK=1'),
      change: { replaceArg: '-Wp,-DK=1', with: '-Wp,-DK=2' },
      expect: 'miss',
    });
    out.push({
      name: `${cc}: nested response file`,
      compiler: cc,
      files: {
        'a.c': 'int f(int x) { return x * K; }\n',
        'outer.rsp': '-O1 @inner.rsp -c a.c -o a.o\n',
        'inner.rsp': '-DK=1\n',
      },
      args: ['@outer.rsp'],
      change: { edit: 'inner.rsp', from: 'K=1', to: 'K=2' },
      expect: 'miss',
    });
    out.push({
      name: `${cc}: -x c++ on a .c file`,
      compiler: cc,
      files: { 'a.c': 'int f(int x) { return x; }\n' },
      args: compileArgs(cc),
      change: { addArgs: ['-x', 'c++'] },
      expect: 'miss',
    });
    out.push({
      name: `${cc}: -m32`,
      compiler: cc,
      files: { 'a.c': 'long f(long x) { return x * 3; }\n' },
      args: compileArgs(cc),
      change: { addArgs: ['-m32'] },
      expect: 'miss',
      when: m32Works,
    });
    out.push({
      name: `${cc}: -Werror dropped after a failed compile`,
      compiler: cc,
      files: { 'a.c': 'int f(void) { int unused; return 0; }\n' },
      args: compileArgs(cc, '-Wall', '-Werror'),
      change: { dropArgs: ['-Werror'] },
      expect: 'miss',
    });
    out.push({
      name: `${cc}: -Wextra added`,
      compiler: cc,
      files: { 'a.c': 'int f(int x, unsigned y) { return x < y; }\n' },
      args: compileArgs(cc, '-Wall'),
      change: { addArgs: ['-Wextra'] },
      expect: 'miss',
    });
  }
  for (const cc of ALL_COMPILERS) {
    out.push({
      name: `${cc}: response file edited, then touched`,
      compiler: cc,
      files: {
        [src(cc)]: 'int f(int x) { return x * K; }\n',
        'args.rsp': `-O1 -DK=1 -c ${src(cc)} -o a.o\n`,
      },
      args: ['@args.rsp'],
      change: { edit: 'args.rsp', from: 'K=1', to: 'K=2' },
      expect: 'miss',
      next: [{ change: { touch: 'args.rsp' }, expect: 'hit' }],
    });
    out.push({
      name: `${cc}: -imacros file edited`,
      compiler: cc,
      files: { [src(cc)]: 'int f(int x) { return x * K; }\n', 'm.h': '#define K 1\nint ignored;\n' },
      args: compileArgs(cc, '-imacros', 'm.h'),
      change: { edit: 'm.h', from: 'K 1', to: 'K 2' },
      expect: 'miss',
    });
  }
  return out;
}

function headerChanges(): Scenario[] {
  const out: Scenario[] = [];
  for (const cc of C_COMPILERS) {
    const dirs: [string, string[], string][] = [
      ['-iquote', ['-iquote', 'q'], '"qh.h"'],
      ['-isystem', ['-isystem', 's'], '<qh.h>'],
      ['-idirafter', ['-idirafter', 'd'], '"qh.h"'],
    ];
    for (const [opt, args, spelled] of dirs) {
      const dir = args[1]!;
      out.push({
        name: `${cc}: header in an ${opt} dir edited`,
        compiler: cc,
        files: {
          'a.c': `#include ${spelled}\nint f(int x) { return x * K; }\n`,
          [`${dir}/qh.h`]: '#define K 1\n',
        },
        args: compileArgs(cc, ...args),
        change: { edit: `${dir}/qh.h`, from: 'K 1', to: 'K 2' },
        expect: 'miss',
      });
    }
    out.push({
      name: `${cc}: #include_next target edited`,
      compiler: cc,
      files: {
        'a.c': '#include <h.h>\nint f(int x) { return x * A * B; }\n',
        'inc1/h.h': '#include_next <h.h>\n#define A 1\n',
        'inc2/h.h': '#define B 2\n',
      },
      args: compileArgs(cc, '-Iinc1', '-Iinc2'),
      change: { edit: 'inc2/h.h', from: 'B 2', to: 'B 3' },
      expect: 'miss',
    });
    out.push({
      name: `${cc}: #include MACRO`,
      compiler: cc,
      files: {
        'a.c': '#include HDR\nint f(int x) { return x * K; }\n',
        'v1.h': '#define K 1\n',
        'v2.h': '#define K 2\n',
      },
      args: compileArgs(cc, '-DHDR="v1.h"'),
      change: { edit: 'v1.h', from: 'K 1', to: 'K 3' },
      expect: 'miss',
      next: [{ change: { replaceArg: '-DHDR="v1.h"', with: '-DHDR="v2.h"' }, expect: 'miss' }],
    });
    out.push({
      name: `${cc}: -D change selects another header`,
      compiler: cc,
      files: {
        'a.c':
          '#if V == 1\n#include "v1.h"\n#else\n#include "v2.h"\n#endif\nint f(int x) { return x * K; }\n',
        'v1.h': '#define K 1\n',
        'v2.h': '#define K 2\n',
      },
      args: compileArgs(cc, '-DV=1'),
      change: { replaceArg: '-DV=1', with: '-DV=2' },
      expect: 'miss',
      next: [{ change: { edit: 'v2.h', from: 'K 2', to: 'K 5' }, expect: 'miss' }],
    });
    out.push(
      ...acrossConfigs({
        name: `${cc}: symlinked header retargeted`,
        compiler: cc,
        files: {
          'a.c': useK(),
          'v1/h.h': '#define K 1\n',
          'v2/h.h': '#define K 2\n',
          'h.h': { symlink: 'v1/h.h' },
        },
        args: compileArgs(cc),
        change: { symlink: 'h.h', target: 'v2/h.h' },
        expect: 'miss',
        next: [{ change: { symlink: 'h.h', target: 'v1/h.h' }, expect: 'hit' }],
      }),
      ...acrossConfigs({
        name: `${cc}: header replaced, same size, same mtime`,
        compiler: cc,
        files: { 'a.c': useK(), 'h.h': '#define K 1\n' },
        args: compileArgs(cc),
        change: { write: 'h.h', content: '#define K 2\n', keepTimes: true },
        expect: 'miss',
      }),
      ...acrossConfigs({
        name: `${cc}: header deleted, then restored`,
        compiler: cc,
        files: { 'a.c': useK(), 'h.h': '#define K 1\n' },
        args: compileArgs(cc),
        change: { remove: 'h.h' },
        expect: FAILS,
        next: [{ change: { write: 'h.h', content: '#define K 1\n' }, expect: 'hit' }],
      }),
    );
  }
  return out;
}

function depfileOptions(): Scenario[] {
  const variants: [string, string[], readonly Config[]][] = [
    ['-MD', ['-MD'], ['default', 'no-depend', 'no-direct']],
    ['-MMD', ['-MMD'], ['default', 'no-depend', 'no-direct']],
    ['-MD -MF dep/x.d', ['-MD', '-MF', 'dep/x.d'], ['default']],
    ['-MD -MT tgt', ['-MD', '-MT', 'tgt'], ['default']],
    ['-MD -MQ $tgt', ['-MD', '-MQ', '$tgt'], ['default']],
    ['-MD -MP', ['-MD', '-MP'], ['default']],
    ['-MMD -MP -MFx.d', ['-MMD', '-MP', '-MFx.d'], ['default']],
    ['-MD -o obj/a.o', ['-MD', '-o', 'obj/a.o'], ['default']],
  ];
  const out: Scenario[] = [];
  for (const cc of C_COMPILERS)
    for (const [label, opts, configs] of variants) {
      const args = opts.includes('-o') ? [...opts, '-c', 'a.c'] : compileArgs(cc, ...opts);
      out.push(
        ...acrossConfigs(
          {
            name: `${cc}: ${label}, header edited`,
            compiler: cc,
            files: {
              'a.c': '#include "h.h"\n#include "g.h"\nint f(int x) { return x * K * G; }\n',
              'h.h': '#define K 1\n',
              'g.h': '#define G 1\n',
              'dep/.keep': '',
              'obj/.keep': '',
            },
            args,
            change: { edit: 'h.h', from: 'K 1', to: 'K 2' },
            expect: 'miss',
            next: [{ change: { remove: 'g.h' }, expect: FAILS }],
          },
          configs,
        ),
      );
    }
  return out;
}

function debugInfo(): Scenario[] {
  const out: Scenario[] = [];
  for (const cc of C_COMPILERS) {
    out.push({
      name: `${cc}: -fdebug-prefix-map changed`,
      compiler: cc,
      files: { 'a.c': useK(), 'h.h': '#define K 1\n' },
      args: compileArgs(cc, '-g', '-fdebug-prefix-map={dir}=/src'),
      change: { replaceArg: '-fdebug-prefix-map={dir}=/src', with: '-fdebug-prefix-map={dir}=/other' },
      expect: 'miss',
    });
    out.push({
      name: `${cc}: -ffile-prefix-map, header edited`,
      compiler: cc,
      files: { 'a.c': useK(), 'h.h': '#define K 1\n' },
      args: compileArgs(cc, '-g', '-ffile-prefix-map={dir}=.'),
      change: { edit: 'h.h', from: 'K 1', to: 'K 2' },
      expect: 'miss',
    });
    out.push({
      name: `${cc}: -g -gsplit-dwarf, header edited`,
      compiler: cc,
      files: {
        'a.c': 'struct S { int a; };\n#include "h.h"\nint f(struct S *s) { return s->a * K; }\n',
        'h.h': '#define K 1\n',
      },
      args: compileArgs(cc, '-g', '-gsplit-dwarf'),
      change: { edit: 'h.h', from: 'K 1', to: 'K 2' },
      expect: 'miss',
    });
    out.push({
      name: `${cc}: -g, source moved to another directory of the tree`,
      compiler: cc,
      files: { 'one/a.c': 'int f(int x) { return x; }\n', 'two/a.c': 'int f(int x) { return x; }\n' },
      args: compileArgs(cc, '-g'),
      cwd: 'one',
      change: { cwd: 'two' },
      expect: 'miss',
    });
  }
  return out;
}

function environment(): Scenario[] {
  const warn = 'int f(void) { int unused; return 0; }\n';
  const out: Scenario[] = [];
  for (const cc of C_COMPILERS) {
    out.push({
      name: `${cc}: LC_ALL changes the messages`,
      compiler: cc,
      files: { 'a.c': warn },
      args: compileArgs(cc, '-Wall'),
      env: { LC_ALL: 'C' },
      change: { env: { LC_ALL: 'C.UTF-8' } },
      expect: 'miss',
    });
    out.push({
      name: `${cc}: CPATH changed`,
      compiler: cc,
      files: { 'a.c': useK('cfg.h'), 'c1/cfg.h': '#define K 1\n', 'c2/cfg.h': '#define K 2\n' },
      args: compileArgs(cc),
      env: { CPATH: 'c1' },
      change: { env: { CPATH: 'c2' } },
      expect: 'miss',
      next: [{ change: { edit: 'c2/cfg.h', from: 'K 2', to: 'K 3' }, expect: 'miss' }],
    });
    out.push({
      name: `${cc}: C_INCLUDE_PATH changed`,
      compiler: cc,
      files: {
        'a.c': '#include <cfg.h>\nint f(int x) { return x * K; }\n',
        'c1/cfg.h': '#define K 1\n',
        'c2/cfg.h': '#define K 2\n',
      },
      args: compileArgs(cc),
      env: { C_INCLUDE_PATH: '{dir}/c1' },
      change: { env: { C_INCLUDE_PATH: '{dir}/c2' } },
      expect: 'miss',
    });
    out.push({
      name: `${cc}++: CPLUS_INCLUDE_PATH changed`,
      compiler: `${cc === 'gcc' ? 'g' : cc}++`,
      files: {
        'a.cpp': '#include <cfg.h>\nint f(int x) { return x * K; }\n',
        'c1/cfg.h': '#define K 1\n',
        'c2/cfg.h': '#define K 2\n',
      },
      args: ['-c', 'a.cpp', '-o', 'a.o'],
      env: { CPLUS_INCLUDE_PATH: '{dir}/c1' },
      change: { env: { CPLUS_INCLUDE_PATH: '{dir}/c2' } },
      expect: 'miss',
    });
    out.push({
      name: `${cc}: COMPILER_PATH set`,
      compiler: cc,
      files: { 'a.c': warn, 'tools/.keep': '' },
      args: compileArgs(cc),
      change: { env: { COMPILER_PATH: '{dir}/tools' } },
      expect: 'miss',
    });
  }
  out.push({
    name: 'gcc: LANG changes the messages (LC_ALL unset)',
    compiler: 'gcc',
    files: { 'a.c': warn },
    args: compileArgs('gcc', '-Wall'),
    env: { LC_ALL: undefined, LANG: 'C' },
    change: { env: { LANG: 'C.UTF-8' } },
    expect: 'miss',
  });
  out.push(
    ...acrossConfigs({
      name: 'gcc: SOURCE_DATE_EPOCH with __DATE__',
      compiler: 'gcc',
      files: {
        'a.c': '#include "d.h"\nconst char *d = STAMP;\n',
        'd.h': '#define STAMP __DATE__ " " __TIME__\n',
      },
      args: compileArgs('gcc'),
      env: { SOURCE_DATE_EPOCH: '1000000000' },
      change: { env: { SOURCE_DATE_EPOCH: '1100000000' } },
      expect: 'miss',
      next: [{ change: { touch: 'd.h' }, expect: 'hit' }],
    }),
  );
  return out;
}

function assembler(): Scenario[] {
  const out: Scenario[] = [];
  for (const cc of C_COMPILERS) {
    // clang warns about kiln's own -fdiagnostics-color on plain assembler: see scenarios-policy.ts.
    if (cc === 'gcc')
      out.push({
        name: `${cc}: .s edited`,
        compiler: cc,
        files: { 'a.s': '\t.text\n\t.globl f\nf:\n\tmovl $1, %eax\n\tret\n' },
        args: ['-c', 'a.s', '-o', 'a.o'],
        change: { edit: 'a.s', from: '$1', to: '$2' },
        expect: 'miss',
        next: [{ change: { touch: 'a.s' }, expect: 'hit' }],
      });
    out.push({
      name: `${cc}: .S with a -D change`,
      compiler: cc,
      files: { 'a.S': '\t.text\n\t.globl f\nf:\n\tmovl $VAL, %eax\n\tret\n' },
      args: ['-DVAL=1', '-c', 'a.S', '-o', 'a.o'],
      change: { replaceArg: '-DVAL=1', with: '-DVAL=2' },
      expect: 'miss',
    });
    out.push(
      ...acrossConfigs({
        name: `${cc}: .S with an #include edited`,
        compiler: cc,
        files: {
          'a.S': '#include "v.inc"\n\t.text\n\t.globl f\nf:\n\tmovl $VAL, %eax\n\tret\n',
          'v.inc': '#define VAL 1\n',
        },
        args: ['-c', 'a.S', '-o', 'a.o'],
        change: { edit: 'v.inc', from: 'VAL 1', to: 'VAL 2' },
        expect: 'miss',
      }),
    );
    out.push({
      name: `${cc}: .s with .incbin at the start of a line`,
      compiler: cc,
      files: { 'a.s': '\t.data\n\t.incbin "data.bin"\n', 'data.bin': 'one\n' },
      args: ['-c', 'a.s', '-o', 'a.o'],
      initial: 'uncached',
      change: { write: 'data.bin', content: 'two\n' },
      expect: 'uncached',
    });
    out.push({
      name: `${cc}: .s with .include at the start of a line`,
      compiler: cc,
      files: { 'a.s': '\t.include "x.inc"\n', 'x.inc': '\t.data\n\t.long 1\n' },
      args: ['-c', 'a.s', '-o', 'a.o'],
      initial: 'uncached',
      change: { edit: 'x.inc', from: '.long 1', to: '.long 2' },
      expect: 'uncached',
    });
  }
  return out;
}

/** Calls kiln must hand back to the compiler untouched. */
function uncached(): Scenario[] {
  const out: Scenario[] = [];
  for (const cc of C_COMPILERS) {
    const files = { 'a.c': useK(), 'h.h': '#define K 1\n' };
    const edit = { edit: 'h.h', from: 'K 1', to: 'K 2' } as const;
    const cases: [string, string[]][] = [
      ['-S', ['-S', 'a.c', '-o', 'a.s']],
      ['-E -o', ['-E', 'a.c', '-o', 'a.i']],
      ['link', ['a.c', '-shared', '-o', 'liba.so']],
      ['-fsyntax-only', ['-fsyntax-only', 'a.c']],
      ['-save-temps', ['-save-temps', '-c', 'a.c', '-o', 'a.o']],
    ];
    out.push({
      name: `${cc}: -Xpreprocessor -MD -Xpreprocessor -MF -Xpreprocessor x.d (rejected by the compiler)`,
      compiler: cc,
      files,
      args: compileArgs(cc, '-Xpreprocessor', '-MD', '-Xpreprocessor', '-MF', '-Xpreprocessor', 'x.d'),
      // kiln refuses dependency options through -Xpreprocessor before the compiler rejects them.
      initial: 'uncached',
      change: edit,
      expect: 'uncached',
    });
    for (const [label, args] of cases)
      out.push({
        name: `${cc}: ${label} is run as is`,
        compiler: cc,
        files,
        args,
        initial: 'uncached',
        change: edit,
        expect: 'uncached',
      });
  }
  return out;
}

/** Two daemons on one cache dir: entries written by one are hits for the other. */
function sharedCache(): Scenario[] {
  return C_COMPILERS.map((cc) => ({
    name: `${cc}: two daemons share one cache dir`,
    compiler: cc,
    files: { 'a.c': useK(), 'h.h': '#define K 1\n' },
    args: compileArgs(cc, '-g'),
    change: { daemon: 1 },
    expect: 'hit',
    next: [
      { change: { edit: 'h.h', from: 'K 1', to: 'K 2' }, expect: 'miss' },
      { change: { daemon: 0 }, expect: 'hit' },
    ],
  }));
}

export const holdingScenariosA = (): Scenario[] => [
  ...argumentChanges(),
  ...headerChanges(),
  ...environment(),
];

export const holdingScenariosB = (): Scenario[] => [
  ...depfileOptions(),
  ...debugInfo(),
  ...assembler(),
  ...uncached(),
  ...sharedCache(),
];
