import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FileDigestCache, statSignature } from '../src/cache/digest.js';
import { commandsOf, DriverTools } from '../src/compiler/driver-tools.js';

describe('commandsOf', () => {
  it("reads gcc's bare and clang's quoted command lines, once each", () => {
    const gcc = [
      'Using built-in specs.',
      'COMPILER_PATH=/usr/lib/gcc/x86_64-linux-gnu/12/',
      ' /usr/lib/gcc/x86_64-linux-gnu/12/cc1 -quiet a.c -o /tmp/cc1.s',
      "COLLECT_GCC_OPTIONS='-c'",
      ' as --64 -o a.o /tmp/cc1.s',
    ].join('\n');
    expect(commandsOf(gcc)).toEqual(['/usr/lib/gcc/x86_64-linux-gnu/12/cc1', 'as']);
    const clang = [
      ' (in-process)',
      ' "/usr/lib/llvm-14/bin/clang" "-cc1" "-o" "a.o"',
      ' "/usr/bin/as" "x"',
    ].join('\n');
    expect(commandsOf(clang)).toEqual(['/usr/lib/llvm-14/bin/clang', '/usr/bin/as']);
  });
});

describe('DriverTools with the real gcc', () => {
  const gcc = '/usr/bin/gcc';
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-tools-'));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
  const src = path.join(dir, 'a.c');
  fs.writeFileSync(src, 'int f(void) { return 1; }\n');
  const env = { PATH: process.env.PATH ?? '/usr/bin:/bin' };
  const tools = new DriverTools(new FileDigestCache());
  const digest = (e: Record<string, string>, args = ['-c', 'a.c'], toolDirs: string[] = []) =>
    tools.digest(gcc, statSignature(gcc), 'c', args, toolDirs, dir, e);

  it('changes when another as comes first in PATH, or in a -B dir, and back when it goes', async () => {
    const base = await digest(env);
    expect(base).toMatch(/^[0-9a-f]{64}$/);
    expect(await digest(env)).toBe(base);
    const fake = path.join(dir, 'bin');
    fs.mkdirSync(fake);
    fs.writeFileSync(path.join(fake, 'as'), '#!/bin/sh\nexec /usr/bin/as "$@"\n', { mode: 0o755 });
    const withFake = await digest({ PATH: `${fake}:${env.PATH}` });
    expect(withFake).not.toBe(base);
    expect(await digest(env, ['-c', 'a.c', '-B', `${fake}/`], [`${fake}/`])).not.toBe(base);
    expect(await digest(env)).toBe(base);
  });

  it('is undefined when the driver cannot find its cc1 (the call fails as typed)', async () => {
    const relocated = path.join(dir, 'gcc-copy');
    fs.copyFileSync(fs.realpathSync(gcc), relocated);
    fs.chmodSync(relocated, 0o755);
    const found = await tools.digest(relocated, statSignature(relocated), 'c', ['-c', 'a.c'], [], dir, {
      ...env,
      GCC_EXEC_PREFIX: '/nonexistent/',
    });
    expect(found).toBeUndefined();
  });
});
