/**
 * base_dir: the same sources compiled in one directory, then in another under base_dir (two
 * checkouts, or two build directories of one checkout). The second directory's first kiln call
 * must be a hit exactly where its plain compile gives the same bytes (object, depfile, stdout,
 * stderr), and a miss where the output names the directory. The runner compares every call with a
 * plain compile made in the same directory, so a shared entry that should not have been is a failure.
 */
import type { Expect, FileSpec, Scenario } from './scenario.js';

type Compiler = 'gcc' | 'clang' | 'g++' | 'clang++';

const CHECKOUT = {
  'src/a.c': '#include "x.h"\nint f(int v) { return v * X; }\n',
  'src/file.c': '#include "x.h"\nconst char *where(void) { return __FILE__; }\nint g(void) { return X; }\n',
  'src/warn.c': '#include "x.h"\nint w(void) { int unused; return X; }\n',
  'src/ub.c': '#include "x.h"\nint d(int a, int b) { return a / b + X; }\n',
  'src/loc.cpp':
    '#include <source_location>\n#include "x.h"\nunsigned line(std::source_location l = std::source_location::current()) { return l.line() + X; }\nunsigned here() { return line(); }\n',
  'include/x.h': '#define X 3\n',
  'build/.keep': '',
} as const;

/** Two checkouts, co1 and co2, with one build directory each. */
function checkouts(): Record<string, FileSpec> {
  const files: Record<string, FileSpec> = {};
  for (const co of ['co1', 'co2'])
    for (const [rel, text] of Object.entries(CHECKOUT)) files[`${co}/${rel}`] = text;
  return files;
}

/** `{co}` in an argument: the checkout's absolute directory. */
const expand = (args: readonly string[], co: string) => args.map((a) => a.replaceAll('{co}', `{dir}/${co}`));

/**
 * A build in co1, then the same build in co2: `second` is the first co2 call's outcome (its
 * second call is always a hit).
 */
function twoCheckouts(
  name: string,
  compiler: Compiler,
  source: string,
  flags: readonly string[],
  second: Expect,
  extra: Partial<Scenario> = {},
): Scenario {
  const args = (co: string) =>
    expand(
      [...flags, '-I{co}/include', '-c', `{co}/src/${source}`, '-o', source.replace(/\.\w+$/, '.o')],
      co,
    );
  return {
    name: `${compiler}: ${name}`,
    compiler,
    files: checkouts(),
    args: args('co1'),
    cwd: 'co1/build',
    config: 'base-dir',
    change: [{ cwd: 'co2/build' }, { args: args('co2') }],
    expect: second,
    expectWarm: 'hit',
    ...extra,
  };
}

/** One checkout with two build directories, source and includes named absolutely (CMake's way). */
function twoBuildDirs(name: string, compiler: Compiler, flags: readonly string[], second: Expect): Scenario {
  const args = (build: string) =>
    expand([...flags, '-I{co}/include', '-c', '{co}/src/a.c', '-o', 'a.o'], 'proj').map((a) =>
      a.replaceAll('{build}', `{dir}/proj/${build}`),
    );
  return {
    name: `${compiler}: ${name}`,
    compiler,
    files: {
      'proj/src/a.c': CHECKOUT['src/a.c'],
      'proj/include/x.h': CHECKOUT['include/x.h'],
      'proj/build1/.keep': '',
      'proj/build2/.keep': '',
    },
    args: args('build1'),
    cwd: 'proj/build1',
    config: 'base-dir',
    change: [{ cwd: 'proj/build2' }, { args: args('build2') }],
    expect: second,
    expectWarm: 'hit',
  };
}

function forCompiler(cc: 'gcc' | 'clang'): Scenario[] {
  return [
    // Shared: nothing in the output depends on where the checkout is.
    twoCheckouts('two checkouts, no -g', cc, 'a.c', [], 'hit'),
    twoCheckouts('two checkouts, -MD depfile (written for the second checkout)', cc, 'a.c', ['-MD'], 'hit'),
    twoCheckouts(
      'two checkouts, -MD -MF with an absolute path',
      cc,
      'a.c',
      ['-MD', '-MF', '{co}/build/a.dep'],
      'hit',
    ),
    twoCheckouts(
      'two checkouts, -g with the checkout prefix-mapped',
      cc,
      'a.c',
      ['-g', '-fdebug-prefix-map={co}=.'],
      'hit',
    ),
    twoCheckouts(
      'two checkouts, -g, -ffile-prefix-map, -MD',
      cc,
      'a.c',
      ['-g', '-ffile-prefix-map={co}=/src', '-MD'],
      'hit',
    ),
    twoCheckouts(
      'two checkouts, __FILE__ under -ffile-prefix-map',
      cc,
      'file.c',
      ['-ffile-prefix-map={co}=.'],
      'hit',
    ),
    twoBuildDirs('two build directories, -MD', cc, ['-MD'], 'hit'),
    twoBuildDirs(
      'two build directories, -g with each directory mapped',
      cc,
      [
        '-g',
        '-fdebug-prefix-map={build}=build',
        '-fdebug-prefix-map={co}/src=src',
        '-fdebug-prefix-map={co}/include=include',
      ],
      'hit',
    ),
    // Not shared: the second checkout's sources differ.
    twoCheckouts('two checkouts, a header that differs', cc, 'a.c', ['-MD'], 'miss', {
      change: [
        { cwd: 'co2/build' },
        { args: expand(['-MD', '-I{co}/include', '-c', '{co}/src/a.c', '-o', 'a.o'], 'co2') },
        { edit: 'co2/include/x.h', from: 'X 3', to: 'X 4' },
      ],
    }),
    // Same bytes, but found beside the source: another file in the depfile and the debug info.
    twoCheckouts(
      'two checkouts, the same header beside the source shadows the -I one',
      cc,
      'a.c',
      ['-MD'],
      'miss',
      {
        change: [
          { cwd: 'co2/build' },
          { args: expand(['-MD', '-I{co}/include', '-c', '{co}/src/a.c', '-o', 'a.o'], 'co2') },
          { write: 'co2/src/x.h', content: CHECKOUT['include/x.h'] },
        ],
      },
    ),
    // Not shared: the output names the directory.
    twoCheckouts('two checkouts, -g without a prefix map', cc, 'a.c', ['-g'], 'miss'),
    twoCheckouts(
      'two checkouts, -g with only the build directory mapped',
      cc,
      'a.c',
      ['-g', '-fdebug-prefix-map={co}/build=.'],
      'miss',
    ),
    twoCheckouts('two checkouts, __FILE__ as an absolute path', cc, 'file.c', [], 'miss'),
    twoCheckouts('two checkouts, a warning naming the source', cc, 'warn.c', ['-Wall'], 'miss'),
    twoCheckouts('two checkouts, -fsanitize=undefined', cc, 'ub.c', ['-fsanitize=undefined'], 'miss'),
    twoBuildDirs(
      'two build directories, -g with the checkout mapped (DW_AT_comp_dir differs)',
      cc,
      ['-g', '-fdebug-prefix-map={co}=.'],
      'miss',
    ),
  ];
}

/** The same with direct mode off: every hit is a preprocessor-mode one. */
function withoutDirectMode(cc: 'gcc' | 'clang'): Scenario[] {
  return [
    twoCheckouts('two checkouts, -MD, no direct mode', cc, 'a.c', ['-MD'], 'hit'),
    twoCheckouts(
      'two checkouts, -g mapped, no direct mode',
      cc,
      'a.c',
      ['-g', '-fdebug-prefix-map={co}=.'],
      'hit',
    ),
    twoCheckouts('two checkouts, -g unmapped, no direct mode', cc, 'a.c', ['-g'], 'miss'),
    twoCheckouts(
      'two checkouts, a warning naming the source, no direct mode',
      cc,
      'warn.c',
      ['-Wall'],
      'miss',
    ),
  ].map((s) => ({ ...s, config: 'base-dir-no-direct' as const }));
}

export const BASE_DIR_SCENARIOS: Scenario[] = [
  ...forCompiler('gcc'),
  ...forCompiler('clang'),
  ...withoutDirectMode('gcc'),
  ...withoutDirectMode('clang'),
  // std::source_location takes the path from the line markers (__builtin_FILE / __builtin_source_location).
  twoCheckouts('two checkouts, std::source_location', 'g++', 'loc.cpp', ['-std=c++20'], 'miss'),
];
