import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { DEFAULT_JOB_LIMITS, type SandboxJob } from '@kiln/plugins';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bwrapArgs } from '../src/bwrap-command.js';

let root: string;
beforeAll(async () => {
  root = await fs.mkdtemp(path.join(os.tmpdir(), 'kiln-bwrap-args-'));
  await fs.mkdir(path.join(root, 'usr'));
  await fs.mkdir(path.join(root, 'proc'));
  await fs.symlink('usr/lib', path.join(root, 'lib'));
  await fs.writeFile(path.join(root, 'marker'), '');
});
afterAll(() => fs.rm(root, { recursive: true, force: true }));

const job = (over: Partial<SandboxJob> = {}): SandboxJob => ({
  id: 'j1',
  toolchainRoot: root,
  cwd: '/home/me/proj',
  argv: ['/usr/bin/gcc', '-c', 'a.i'],
  env: { PATH: '/usr/bin', LD_PRELOAD: '/evil.so' },
  inputs: [{ path: '/home/me/proj/a.i', data: Buffer.from('') }],
  outputs: ['/home/me/proj/a.o'],
  timeoutMs: 1000,
  limits: DEFAULT_JOB_LIMITS,
  ...over,
});

describe('bwrapArgs', () => {
  it('builds the root from the toolchain and the job dir at the client cwd', async () => {
    const bwrap = { path: '/usr/bin/bwrap', version: '0.8.0', parts: [0, 8, 0] };
    const args = await bwrapArgs(job(), { bwrap, jobDir: '/w/j1-x', uid: 65534, gid: 65534, extraArgs: [] });
    expect(args.join(' ')).toBe(
      [
        '--unshare-all --unshare-user --uid 65534 --gid 65534',
        '--die-with-parent --new-session --cap-drop ALL --clearenv --disable-userns',
        `--symlink usr/lib /lib --ro-bind ${root}/marker /marker --ro-bind ${root}/usr /usr`,
        '--proc /proc --dev /dev --remount-ro /dev --tmpfs /dev/shm --tmpfs /tmp',
        '--bind /w/j1-x /home/me/proj --chdir /home/me/proj',
        '--setenv PATH /usr/bin --setenv LD_PRELOAD /evil.so',
        '-- /usr/bin/gcc -c a.i',
      ].join(' '),
    );
  });

  it("puts /tmp and /dev/shm on the job's own space, or sizes fresh ones", async () => {
    const bwrap = { path: '/usr/bin/bwrap', version: '0.8.0', parts: [0, 8, 0] };
    const base = { bwrap, jobDir: '/w/j/cwd', uid: 1, gid: 1, extraArgs: [] };
    const own = await bwrapArgs(job(), { ...base, tmpDirs: { tmp: '/w/j/tmp', shm: '/w/j/shm' } });
    expect(own.join(' ')).toContain(
      '--dev /dev --remount-ro /dev --bind /w/j/shm /dev/shm --bind /w/j/tmp /tmp --bind /w/j/cwd /home/me/proj',
    );
    const sized = await bwrapArgs(job(), { ...base, tmpBytes: 4096 });
    expect(sized.join(' ')).toContain('--size 4096 --tmpfs /dev/shm --size 4096 --tmpfs /tmp');
    const old = { path: '/usr/bin/bwrap', version: '0.6.1', parts: [0, 6, 1] };
    expect(await bwrapArgs(job(), { ...base, bwrap: old, tmpBytes: 4096 })).not.toContain('--size');
  });

  it('leaves out options an old bwrap does not know', async () => {
    const bwrap = { path: '/usr/bin/bwrap', version: '0.3.3', parts: [0, 3, 3] };
    const args = await bwrapArgs(job(), { bwrap, jobDir: '/w', uid: 1, gid: 1, extraArgs: ['--x'] });
    expect(args).not.toContain('--clearenv');
    expect(args).not.toContain('--disable-userns');
    expect(args.slice(-5)).toEqual(['--x', '--', '/usr/bin/gcc', '-c', 'a.i']);
  });
});
