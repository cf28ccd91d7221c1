/**
 * The example plugin against the sandbox conformance kit, with a real gcc packed by kiln's toolchain
 * packager and unpacked as a worker would (an author outside this repository gets the same root
 * from `kiln --package-toolchain gcc gcc.tar.gz` and `tar -xzf`), then through the real loader.
 */
import 'reflect-metadata';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { bufferedResult, DEFAULT_JOB_LIMITS, loadPlugin, SANDBOX, safeExtract } from '@kiln/plugins';
import { sandboxConformance } from '@kiln/plugins/conformance';
import { container } from 'tsyringe';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packageToolchain } from '../../../../core/dist/toolchain/package.js';
import { UnshareSandbox } from '../src/unshare-sandbox.js';

const usable =
  process.getuid?.() === 0 && spawnSync('sh', ['-c', 'command -v unshare && command -v gcc']).status === 0;
if (!usable && process.env.CI === 'true') throw new Error('CI=true: this test needs root, unshare and gcc');

let tmp = '';
const toolchain = { root: '', compiler: '' };
const options = (over = {}) => ({
  work_dir: path.join(tmp, 'work'),
  max_output_bytes: 64 * 1024 * 1024,
  max_log_bytes: 1024 * 1024,
  // Apart from the ranges of the bwrap tests on this host.
  slot_uid_base: 2_310_000_000,
  job_gid: 65534,
  ...over,
});

describe.skipIf(!usable)('unshare sandbox (example plugin)', () => {
  beforeAll(async () => {
    tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'kiln-unshare-test-'));
    const archive = path.join(tmp, 'gcc.tar.gz');
    const spec = await packageToolchain('gcc', archive);
    await safeExtract(archive, path.join(tmp, 'gcc-root'));
    Object.assign(toolchain, { root: path.join(tmp, 'gcc-root'), compiler: spec.compiler });
  });
  afterAll(async () => {
    if (tmp) await fs.rm(tmp, { recursive: true, force: true });
  });

  sandboxConformance({ name: 'unshare', createSandbox: () => new UnshareSandbox(options()), toolchain });

  it('runs a job whose cwd lies under /tmp', async () => {
    const cwd = '/tmp/kiln-unshare-cwd/proj';
    const r = await bufferedResult(
      await new UnshareSandbox(options()).run({
        id: 'tmp-cwd',
        toolchainRoot: toolchain.root,
        cwd,
        argv: [toolchain.compiler, '-c', 'a.i', '-o', 'a.o'],
        env: { PATH: '/usr/bin' },
        inputs: [{ path: `${cwd}/a.i`, data: Buffer.from('# 1 "a.c"\nint a(void) { return 1; }\n') }],
        outputs: [`${cwd}/a.o`],
        timeoutMs: 30_000,
        limits: DEFAULT_JOB_LIMITS,
      }),
    );
    expect(r.exitCode, r.stderr.toString()).toBe(0);
    expect(r.outputs.get(`${cwd}/a.o`)?.subarray(1, 4).toString()).toBe('ELF');
  });

  it('leaves no job space or mount behind', async () => {
    const mounts = await fs.readFile('/proc/self/mounts', 'utf8');
    expect(mounts).not.toContain(path.join(tmp, 'work'));
    expect(await fs.readdir(path.join(tmp, 'work'))).toEqual([]);
  });

  it('loads by file path through the real loader and probes the host', async () => {
    const child = container.createChildContainer();
    const file = path.resolve(import.meta.dirname, '../dist/index.js');
    const loaded = await loadPlugin({
      spec: file,
      kind: 'sandbox',
      config: { work_dir: path.join(tmp, 'loader-work'), slot_uid_base: 2_320_000_000 },
      container: child,
      baseDir: '/',
    });
    expect(loaded).toMatchObject({ name: 'unshare', kind: 'sandbox', source: file });
    expect(loaded.config).toMatchObject({ max_log_bytes: 16 * 1024 * 1024, job_gid: 65534 });
    const probe = await child.resolve(SANDBOX).probe();
    expect(probe, probe.detail).toMatchObject({ ok: true });
    await expect(
      loadPlugin({
        spec: file,
        kind: 'sandbox',
        config: { work_dirr: '/x' },
        container: child,
        baseDir: '/',
      }),
    ).rejects.toMatchObject({
      code: 'KILN_ERR_PLUGIN_CONFIG',
      message: expect.stringContaining('"work_dirr"'),
    });
  });
});
