/**
 * The bubblewrap sandbox: the conformance kit with a real gcc packaged by kiln's own toolchain
 * packager and extracted by the worker's safe extractor, then the plugin through the real loader.
 */
import 'reflect-metadata';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { DEFAULT_JOB_LIMITS, loadPlugin, SANDBOX, safeExtract } from '@kiln/plugins';
import { sandboxConformance } from '@kiln/plugins/conformance';
import { BwrapSandbox } from '@kiln/sandbox-bwrap';
import { container } from 'tsyringe';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packageToolchain } from '../core/dist/toolchain/package.js';
import { have } from './helpers/prereq.js';

const hasBwrap = have('bwrap');
const root = path.resolve(import.meta.dirname, '..');
let tmp: string;
const toolchain = { root: '', compiler: '' };

const options = (workDir: string) => ({
  bwrap_path: 'bwrap',
  work_dir: workDir,
  max_output_bytes: 64 * 1024 * 1024,
  max_log_bytes: 1024 * 1024,
  job_uid: 65534,
  job_gid: 65534,
  // Apart from the default range, which workers of other test files on this host use.
  slot_uid_base: 2_100_000_000,
  extra_args: [],
});

describe.skipIf(!hasBwrap)('bwrap sandbox', () => {
  beforeAll(async () => {
    tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'kiln-bwrap-test-'));
    // Jobs start as uid 65534, which must be able to reach the toolchain.
    await fs.chmod(tmp, 0o755);
    const archive = path.join(tmp, 'gcc.tar.gz');
    const spec = await packageToolchain('gcc', archive);
    await safeExtract(archive, path.join(tmp, 'gcc-root'));
    Object.assign(toolchain, { root: path.join(tmp, 'gcc-root'), compiler: spec.compiler });
  });
  afterAll(async () => {
    if (tmp) await fs.rm(tmp, { recursive: true, force: true });
  });

  sandboxConformance({
    name: 'bwrap',
    createSandbox: () => new BwrapSandbox(options(path.join(tmp, 'work'))),
    toolchain,
  });

  describe('through the plugin loader', () => {
    const load = (config: unknown) => {
      const child = container.createChildContainer();
      return loadPlugin({ spec: 'bwrap', kind: 'sandbox', config, container: child, baseDir: root }).then(
        (loaded) => ({ loaded, sandbox: child.resolve(SANDBOX) }),
      );
    };

    it('loads by its short name and probes the host', async () => {
      const { loaded, sandbox } = await load({ work_dir: path.join(tmp, 'loader-work') });
      expect(loaded).toMatchObject({ name: 'bwrap', kind: 'sandbox' });
      expect(loaded.source).toContain('sandbox-bwrap');
      expect(loaded.config).toMatchObject({ bwrap_path: 'bwrap', job_uid: 65534, extra_args: [] });
      expect(sandbox.name).toBe('bwrap');
      const probe = await sandbox.probe();
      expect(probe, probe.detail).toMatchObject({ ok: true });
      expect(probe.detail).toMatch(/^bubblewrap \d+\.\d+\.\d+ at \//);
    });

    it('registers even when bwrap is missing; probe says how to install it', async () => {
      const { sandbox } = await load({ bwrap_path: '/nonexistent/bwrap', work_dir: path.join(tmp, 'w2') });
      const probe = await sandbox.probe();
      expect(probe.ok).toBe(false);
      expect(probe.detail).toContain('/nonexistent/bwrap');
      expect(probe.detail).toContain('apt install bubblewrap');
      await expect(
        sandbox.run({
          id: 'j',
          toolchainRoot: toolchain.root,
          cwd: '/w',
          argv: ['/bin/true'],
          env: {},
          inputs: [],
          outputs: [],
          timeoutMs: 1000,
          limits: DEFAULT_JOB_LIMITS,
        }),
      ).rejects.toMatchObject({ code: 'KILN_ERR_SANDBOX_FAILED' });
    });

    it.each([
      [{ bwrap_pth: 'x' }, /"bwrap_pth": unknown key/],
      [{ max_output_bytes: '1G' }, /"max_output_bytes": expected an integer/],
      [{ job_uid: -1 }, /"job_uid": must be at least 0/],
      [{ extra_args: '--foo' }, /"extra_args": expected an array of strings/],
      [{ work_dir: 'relative' }, /"work_dir": "relative" does not match: expected an absolute path/],
    ])('rejects the config %j naming the key', async (config, message) => {
      const err = await load(config).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: 'KILN_ERR_PLUGIN_CONFIG' });
      expect((err as Error).message).toContain('plugin "bwrap"');
      expect((err as Error).message).toMatch(message);
    });
  });
});
