/** The host side of a job that every sandbox shares: validation, inputs, outputs and clean-up. */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  closeOutputs,
  collectOutputs,
  DEFAULT_JOB_LIMITS,
  ensureWorkDir,
  OutputLimitError,
  readOutput,
  removeJobDir,
  type SandboxJob,
  validateJob,
  writeInputs,
} from '../src/index.js';

let tmp: string;
beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'kiln-job-files-'));
});
afterAll(() => fs.rm(tmp, { recursive: true, force: true }));

const job = (over: Partial<SandboxJob> = {}): SandboxJob => ({
  id: 'j1',
  toolchainRoot: '/opt/toolchain',
  cwd: '/home/me/proj',
  argv: ['/usr/bin/gcc', '-c', 'a.i'],
  env: { PATH: '/usr/bin', LD_PRELOAD: '/evil.so' },
  inputs: [{ path: '/home/me/proj/a.i', data: Buffer.from('') }],
  outputs: ['/home/me/proj/a.o'],
  timeoutMs: 1000,
  limits: DEFAULT_JOB_LIMITS,
  ...over,
});

describe('validateJob', () => {
  it('accepts a well-formed job', () => {
    expect(() => validateJob(job())).not.toThrow();
  });

  it.each<[string, Partial<SandboxJob>]>([
    ['id', { id: '../x' }],
    ['relative toolchainRoot', { toolchainRoot: 'toolchain' }],
    ['cwd /', { cwd: '/' }],
    ['cwd in /proc', { cwd: '/proc/1' }],
    ['cwd /dev', { cwd: '/dev' }],
    ['cwd with a trailing slash', { cwd: '/home/me/proj/' }],
    ['cwd with //', { cwd: '/home//me' }],
    ['relative argv[0]', { argv: ['gcc'] }],
    ['empty argv', { argv: [] }],
    ['NUL in an argument', { argv: ['/usr/bin/gcc', 'a\0b'] }],
    ['= in an env name', { env: { 'A=B': 'c' } }],
    ['a non-string env value', { env: { A: 1 as never } }],
    ['input twice', { inputs: [1, 2].map(() => ({ path: '/home/me/proj/a', data: Buffer.from('') })) }],
    ['input outside cwd', { inputs: [{ path: '/home/me/other/a', data: Buffer.from('') }] }],
    ['input without data', { inputs: [{ path: '/home/me/proj/a', data: 'text' as never }] }],
    [
      'input under another input',
      {
        inputs: [
          { path: '/home/me/proj/a', data: Buffer.from('') },
          { path: '/home/me/proj/a/b', data: Buffer.from('') },
        ],
      },
    ],
    ['output equal to cwd', { outputs: ['/home/me/proj'] }],
    ['output with ..', { outputs: ['/home/me/proj/x/../../a.o'] }],
    ['timeout 0', { timeoutMs: 0 }],
    ['timeout beyond setTimeout', { timeoutMs: 2 ** 31 }],
    ['no limits', { limits: undefined as never }],
    ['a zero process limit', { limits: { ...DEFAULT_JOB_LIMITS, processes: 0 } }],
    ['a fractional memory limit', { limits: { ...DEFAULT_JOB_LIMITS, memoryBytes: 1.5 } }],
  ])('refuses %s', (_what, over) => {
    expect(() => validateJob(job(over))).toThrow(
      expect.objectContaining({ code: 'KILN_ERR_SANDBOX_JOB_INVALID', statusCode: 400 }),
    );
  });
});

describe('ensureWorkDir', () => {
  it('creates a private directory others can only traverse', async () => {
    const dir = path.join(tmp, 'work', 'a');
    await ensureWorkDir(dir);
    expect((await fs.stat(dir)).mode & 0o777).toBe(0o711);
  });

  it('refuses a directory others can write to, and a symlink', async () => {
    const open = path.join(tmp, 'open');
    await fs.mkdir(open);
    await fs.chmod(open, 0o777);
    await expect(ensureWorkDir(open)).rejects.toThrow(/writable by others/);
    const link = path.join(tmp, 'link');
    await fs.symlink(path.join(tmp, 'work'), link);
    await expect(ensureWorkDir(link)).rejects.toThrow(/not a directory/);
  });
});

describe('writeInputs', () => {
  it('writes inputs at their place under cwd, with their mode', async () => {
    const dir = await fs.mkdtemp(path.join(tmp, 'in-'));
    await writeInputs(
      dir,
      '/p',
      [
        { path: '/p/a.c', data: Buffer.from('int a;') },
        { path: '/p/sub/deep/run.sh', data: Buffer.from('#!/bin/sh'), executable: true },
      ],
      undefined,
    );
    expect(await fs.readFile(path.join(dir, 'a.c'), 'utf8')).toBe('int a;');
    expect((await fs.stat(path.join(dir, 'a.c'))).mode & 0o777).toBe(0o644);
    expect((await fs.stat(path.join(dir, 'sub/deep/run.sh'))).mode & 0o777).toBe(0o755);
  });

  it('never writes through a file already there', async () => {
    const dir = await fs.mkdtemp(path.join(tmp, 'in-'));
    await fs.symlink(path.join(tmp, 'victim'), path.join(dir, 'a.c'));
    await expect(
      writeInputs(dir, '/p', [{ path: '/p/a.c', data: Buffer.from('x') }], undefined),
    ).rejects.toMatchObject({ code: 'EEXIST' });
    await expect(fs.stat(path.join(tmp, 'victim'))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it.skipIf(process.getuid?.() !== 0)('hands what it created to the owner', async () => {
    const dir = await fs.mkdtemp(path.join(tmp, 'in-'));
    await writeInputs(dir, '/p', [{ path: '/p/s/a.c', data: Buffer.from('') }], { uid: 4242, gid: 4343 });
    for (const p of [dir, path.join(dir, 's'), path.join(dir, 's/a.c')])
      expect(await fs.stat(p)).toMatchObject({ uid: 4242, gid: 4343 });
  });
});

describe('collectOutputs', () => {
  it('holds regular files open and streams exactly their bytes, even once renamed', async () => {
    const dir = await fs.mkdtemp(path.join(tmp, 'out-'));
    await fs.writeFile(path.join(dir, 'a.o'), 'object');
    await fs.writeFile(path.join(dir, 'empty'), '');
    const outputs = await collectOutputs(dir, '/p', ['/p/a.o', '/p/empty', '/p/missing.o'], 100);
    expect([...outputs.keys()]).toEqual(['/p/a.o', '/p/empty']);
    await fs.rename(path.join(dir, 'a.o'), path.join(dir, 'moved'));
    await fs.writeFile(path.join(dir, 'a.o'), 'swapped in');
    expect((await readOutput(outputs.get('/p/a.o')!)).toString()).toBe('object');
    expect((await readOutput(outputs.get('/p/empty')!)).length).toBe(0);
    await closeOutputs(outputs);
  });

  it('treats symlinks, FIFOs and paths through symlinked directories as absent', async () => {
    const dir = await fs.mkdtemp(path.join(tmp, 'out-'));
    const outside = await fs.mkdtemp(path.join(tmp, 'outside-'));
    await fs.writeFile(path.join(outside, 'x.o'), 'host secret');
    await fs.symlink(path.join(outside, 'x.o'), path.join(dir, 'link.o'));
    await fs.symlink(outside, path.join(dir, 'sub'));
    execFileSync('mkfifo', [path.join(dir, 'fifo.o')]);
    const outputs = await collectOutputs(dir, '/p', ['/p/link.o', '/p/sub/x.o', '/p/fifo.o'], 100);
    expect(outputs.size).toBe(0);
  });

  it('rejects with OutputLimitError past maxBytes in total', async () => {
    const dir = await fs.mkdtemp(path.join(tmp, 'out-'));
    await fs.writeFile(path.join(dir, 'a'), '12345');
    await fs.writeFile(path.join(dir, 'b'), '12345');
    expect((await collectOutputs(dir, '/p', ['/p/a', '/p/b'], 10)).size).toBe(2);
    await expect(collectOutputs(dir, '/p', ['/p/a', '/p/b'], 9)).rejects.toBeInstanceOf(OutputLimitError);
  });
});

describe('removeJobDir', () => {
  it('removes a directory whose job took its permissions away', async () => {
    const dir = await fs.mkdtemp(path.join(tmp, 'rm-'));
    await fs.mkdir(path.join(dir, 'a/b'), { recursive: true });
    await fs.writeFile(path.join(dir, 'a/b/f'), 'x');
    await fs.chmod(path.join(dir, 'a/b'), 0);
    await fs.chmod(path.join(dir, 'a'), 0);
    await removeJobDir(dir);
    await expect(fs.stat(dir)).rejects.toMatchObject({ code: 'ENOENT' });
  });
});
