import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { stripBuiltinDefines } from '../src/daemon/c-remote-plan.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-strip-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
fs.writeFileSync(path.join(dir, 'h.h'), '#define FROM_HEADER 1\n');
fs.writeFileSync(
  path.join(dir, 'a.c'),
  '#include <stdio.h>\n#include "h.h"\n#define LOCAL __GNUC__\nint v = LOCAL + FROM_HEADER + ARG;\n',
);

/** Real gcc -fdirectives-only output, the input the remote compiler gets. */
const directivesOnly = (...extra: string[]): Buffer =>
  execFileSync('gcc', ['-E', '-fdirectives-only', '-DARG=3', ...extra, 'a.c'], {
    cwd: dir,
    maxBuffer: 1 << 26,
  });

describe('stripBuiltinDefines', () => {
  // With -g, a working-directory marker comes before the built-in block.
  it.each([[[]], [['-g']]])(
    "drops gcc's built-in macros and keeps every byte from the command line on (%j)",
    (extra) => {
      const text = directivesOnly(...extra);
      const cut = text.indexOf('# 0 "<command-line>"\n');
      expect(cut).toBeGreaterThan(0);
      // The input really has built-in defines to remove (else this test proves nothing).
      expect(text.subarray(0, cut).toString()).toContain('#define __GNUC__ ');
      const stripped = stripBuiltinDefines(text);
      const strippedCut = stripped.indexOf('# 0 "<command-line>"\n');
      expect(stripped.subarray(0, strippedCut).toString()).not.toContain('#define');
      expect(stripped.subarray(0, strippedCut).toString()).toContain('# 0 "<built-in>"');
      expect(stripped.subarray(strippedCut).equals(text.subarray(cut))).toBe(true);
      // Macros from the command line, headers and the file itself stay.
      for (const m of ['#define ARG 3', '#define FROM_HEADER 1', '#define LOCAL __GNUC__'])
        expect(stripped.toString()).toContain(m);
    },
  );

  it('compiles with -nostdinc to the same object as the original source', () => {
    fs.writeFileSync(path.join(dir, 'a.kiln.c'), stripBuiltinDefines(directivesOnly('-g')));
    execFileSync('gcc', ['-c', '-O2', '-DARG=3', 'a.c', '-o', 'plain.o'], { cwd: dir });
    // Defining a built-in twice would fail here (-Werror): the strip must leave none behind.
    execFileSync('gcc', ['-c', '-O2', '-Werror', '-nostdinc', '-x', 'c', 'a.kiln.c', '-o', 'remote.o'], {
      cwd: dir,
    });
    const text = (o: string) =>
      execFileSync('objdump', ['-d', '--no-show-raw-insn', o], { cwd: dir }).toString();
    expect(text('remote.o').split('\n').slice(3)).toEqual(text('plain.o').split('\n').slice(3));
  });

  it('leaves text without a built-in block as it is, and handles a missing final newline', () => {
    const text = Buffer.from(
      '# 0 "x.c"\n# 1 "/w//"\n#define A 1\n# 1 "x.c"\n#define B 1\n# 2 "y.h"\nint a = A;',
    );
    expect(stripBuiltinDefines(text).equals(text)).toBe(true);
    const builtinAtEnd = Buffer.from('# 0 "x.c"\n# 0 "<built-in>"\n#define __X 1');
    expect(stripBuiltinDefines(builtinAtEnd).toString()).toBe('# 0 "x.c"\n# 0 "<built-in>"\n');
  });
});
