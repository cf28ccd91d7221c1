/**
 * The bulk of the suite: one small project, and a list of one-line mutations applied to it for
 * every compiler and config. Each mutation says what kiln must report under each config.
 */
import { ALL_CONFIGS, type Change, type Config, type Expect, FAILS, type Scenario } from './scenario.js';

export interface Toolchain {
  readonly compiler: 'gcc' | 'g++' | 'clang' | 'clang++';
  readonly ext: 'c' | 'cpp';
  /** The language standard the project starts with, and the one a mutation switches to. */
  readonly std: readonly [string, string];
}

export const TOOLCHAINS: readonly Toolchain[] = [
  { compiler: 'gcc', ext: 'c', std: ['-std=gnu11', '-std=gnu17'] },
  { compiler: 'g++', ext: 'cpp', std: ['-std=gnu++14', '-std=gnu++17'] },
  { compiler: 'clang', ext: 'c', std: ['-std=gnu11', '-std=gnu17'] },
  { compiler: 'clang++', ext: 'cpp', std: ['-std=gnu++14', '-std=gnu++17'] },
];

/** The project: a source with a header beside it, two -I dirs that both hold cfg.h, and a -include. */
export function project(t: Toolchain): Pick<Scenario, 'files' | 'args'> {
  const src = `a.${t.ext}`;
  const body =
    t.ext === 'cpp'
      ? 'namespace n { template <int N> int g(int x) { return x * N; } }\nint f(int x) { int unused; return n::g<K>(x) + V + W + P; } /* note */\n'
      : 'int f(int x) { int unused; return x * K + V + W + P; } /* note */\n';
  return {
    files: {
      [src]: `#include "h.h"\n#include "cfg.h"\n${body}`,
      'h.h': '#define K 3 /* header note */\n',
      'inc1/cfg.h': '#define V 1\n',
      'inc2/cfg.h': '#define V 2\n',
      'inc0/.keep': '',
      'pre.h': '#define P 7\n',
    },
    args: [
      '-O1',
      t.std[0],
      '-DW=1',
      '-Iinc0',
      '-Iinc1',
      '-Iinc2',
      '-include',
      'pre.h',
      '-c',
      src,
      '-o',
      'a.o',
    ],
  };
}

interface Mutation {
  readonly name: string;
  readonly change: (t: Toolchain) => Change | readonly Change[];
  readonly expect: Expect;
}

/**
 * A comment-only edit misses in every mode: -E drops comments, but the compile can still see them
 * (-Wimplicit-fallthrough, warnings quoting the line, column info), so kiln keys file contents.
 */
const commentEdit: Expect = 'miss';

export const MUTATIONS: readonly Mutation[] = [
  { name: 'header macro value', change: () => ({ edit: 'h.h', from: 'K 3', to: 'K 4' }), expect: 'miss' },
  {
    name: 'header comment',
    change: () => ({ edit: 'h.h', from: 'header note', to: 'header text' }),
    expect: commentEdit,
  },
  {
    name: 'source comment',
    change: (t) => ({ edit: `a.${t.ext}`, from: '/* note */', to: '/* text */' }),
    expect: commentEdit,
  },
  {
    name: 'source code',
    change: (t) => ({ edit: `a.${t.ext}`, from: '+ V', to: '- V' }),
    expect: 'miss',
  },
  { name: '-D value', change: () => ({ replaceArg: '-DW=1', with: '-DW=2' }), expect: 'miss' },
  { name: '-O level', change: () => ({ replaceArg: '-O1', with: '-O2' }), expect: 'miss' },
  { name: '-g added', change: () => ({ addArgs: ['-g'] }), expect: 'miss' },
  {
    name: '-I order',
    change: () => ({ replaceArg: '-Iinc1', with: ['-Iinc2', '-Iinc1'] }),
    expect: 'miss',
  },
  { name: '-include file edit', change: () => ({ edit: 'pre.h', from: 'P 7', to: 'P 8' }), expect: 'miss' },
  { name: 'warning flag', change: () => ({ addArgs: ['-Wall'] }), expect: 'miss' },
  { name: '-Werror', change: () => ({ addArgs: ['-Wall', '-Werror'] }), expect: 'failed' },
  { name: 'deleted header', change: () => ({ remove: 'h.h' }), expect: FAILS },
  { name: 'touched header', change: () => ({ touch: 'h.h' }), expect: 'hit' },
  { name: '-std', change: (t) => ({ replaceArg: t.std[0], with: t.std[1] }), expect: 'miss' },
  { name: 'output renamed', change: () => ({ replaceArg: 'a.o', with: 'b.o' }), expect: 'hit' },
  { name: '-MD added', change: () => ({ addArgs: ['-MD'] }), expect: 'miss' },
  { name: 'LC_ALL in the key', change: () => ({ env: { LC_ALL: 'C.UTF-8' } }), expect: 'miss' },
  { name: 'unrelated variable set', change: () => ({ env: { UNRELATED_VARIABLE: '1' } }), expect: 'hit' },
];

/** Every mutation for every toolchain under `configs`. */
export function mutationScenarios(
  toolchains: readonly Toolchain[],
  configs: readonly Config[] = ALL_CONFIGS,
): Scenario[] {
  const out: Scenario[] = [];
  for (const config of configs)
    for (const t of toolchains)
      for (const m of MUTATIONS)
        out.push({
          name: `${t.compiler}: ${m.name} [${config}]`,
          compiler: t.compiler,
          config,
          ...project(t),
          change: m.change(t),
          expect: m.expect,
        });
  return out;
}
