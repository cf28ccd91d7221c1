/**
 * The Docker sandbox: the conformance kit with a real gcc packaged by kiln's own toolchain packager
 * and extracted by the worker's safe extractor, run in a real Docker engine (started here when none
 * runs), then the plugin through the real loader.
 */
import 'reflect-metadata';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { DEFAULT_JOB_LIMITS, loadPlugin, SANDBOX, safeExtract, WORKER_ID } from '@kiln/plugins';
import { sandboxConformance } from '@kiln/plugins/conformance';
import { DockerSandbox, type DockerSandboxOptions } from '@kiln/sandbox-docker';
import { container } from 'tsyringe';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packageToolchain } from '../core/dist/toolchain/package.js';
import { type TestEngine, testEngine } from './helpers/dockerd.js';
import { have } from './helpers/prereq.js';

const hasDocker = have('dockerd');
const root = path.resolve(import.meta.dirname, '..');
let tmp: string;
let engine: TestEngine | undefined;
const toolchain = { root: '', compiler: '' };
const sandboxes: DockerSandbox[] = [];

const options = (over: Partial<DockerSandboxOptions> = {}): DockerSandboxOptions => ({
  engine_socket: engine!.socket,
  work_dir: path.join(tmp, 'work'),
  workerId: `conformance-${process.pid}`,
  hostTriple: 'x86_64-unknown-linux-gnu',
  maxJobs: 4,
  image_cache_size: 20 * 1024 ** 3,
  idle_timeout: 600,
  max_output_bytes: 64 * 1024 * 1024,
  max_log_bytes: 1024 * 1024,
  api_timeout: 60,
  ...over,
});

describe.skipIf(!hasDocker)('docker sandbox', () => {
  beforeAll(async () => {
    engine = await testEngine();
    if (!engine) throw new Error('no Docker engine runs and none can be started here');
    tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'kiln-docker-test-'));
    await fs.chmod(tmp, 0o755);
    const archive = path.join(tmp, 'gcc.tar.gz');
    const spec = await packageToolchain('gcc', archive);
    // Named like the worker's store names roots: by digest.
    const dir = path.join(tmp, 'roots', spec.digest);
    await safeExtract(archive, dir);
    Object.assign(toolchain, { root: dir, compiler: spec.compiler });
  }, 120_000);
  afterAll(async () => {
    for (const s of sandboxes) await s.close().catch(() => {});
    if (tmp) await fs.rm(tmp, { recursive: true, force: true });
    await engine?.stop();
  }, 60_000);

  sandboxConformance({
    name: 'docker',
    createSandbox: () => {
      const s = new DockerSandbox(options());
      sandboxes.push(s);
      return s;
    },
    toolchain,
  });

  describe('through the plugin loader', () => {
    const load = (config: unknown) => {
      const child = container.createChildContainer();
      child.register(WORKER_ID, { useValue: `loader-${process.pid}` });
      return loadPlugin({ spec: 'docker', kind: 'sandbox', config, container: child, baseDir: root }).then(
        (loaded) => {
          const sandbox = child.resolve(SANDBOX) as DockerSandbox;
          sandboxes.push(sandbox);
          return { loaded, sandbox };
        },
      );
    };

    it('loads by its short name and probes the engine', async () => {
      const { loaded, sandbox } = await load({
        engine_socket: engine!.socket,
        work_dir: path.join(tmp, 'lw'),
      });
      expect(loaded).toMatchObject({ name: 'docker', kind: 'sandbox' });
      expect(loaded.source).toContain('sandbox-docker');
      expect(loaded.config).toMatchObject({ idle_timeout: 600, max_log_bytes: 16 * 1024 * 1024 });
      expect(sandbox.name).toBe('docker');
      const probe = await sandbox.probe();
      expect(probe, probe.detail).toMatchObject({ ok: true });
      expect(probe.detail).toMatch(/^container engine \S+ \(API 1\.\d+/);
      expect(probe.detail).toContain('no capabilities, no network, read-only root');
    });

    it('registers without an engine; probe and run say how to start one', async () => {
      const { sandbox } = await load({
        engine_socket: path.join(tmp, 'no.sock'),
        work_dir: path.join(tmp, 'w2'),
      });
      const probe = await sandbox.probe();
      expect(probe.ok).toBe(false);
      expect(probe.detail).toContain(`no container engine answers at unix://${path.join(tmp, 'no.sock')}`);
      expect(probe.detail).toContain('systemctl start docker');
      expect(probe.detail).toContain('podman system service');
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

    it('refuses DOCKER_HOST on TCP', async () => {
      const before = process.env.DOCKER_HOST;
      process.env.DOCKER_HOST = 'tcp://127.0.0.1:2375';
      try {
        await expect(load({})).rejects.toMatchObject({ code: 'KILN_ERR_PLUGIN_REGISTER' });
      } finally {
        if (before === undefined) delete process.env.DOCKER_HOST;
        else process.env.DOCKER_HOST = before;
      }
    });

    it.each([
      [{ engine_sock: 'x' }, /"engine_sock": unknown key/],
      [{ engine_socket: 'tcp://1.2.3.4:2375' }, /"engine_socket": "tcp:\/\/1.2.3.4:2375" does not match/],
      [
        { runtime: 'run sc' },
        /"runtime": "run sc" does not match: expected a name of letters, digits, and _ \. -/,
      ],
      [{ image_cache_size: '10G' }, /"image_cache_size": expected an integer/],
      [{ job_uid: 0 }, /"job_uid": must be at least 1/],
    ])('rejects the config %j naming the key', async (config, message) => {
      const err = await load(config).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: 'KILN_ERR_PLUGIN_CONFIG' });
      expect((err as Error).message).toContain('plugin "docker"');
      expect((err as Error).message).toMatch(message);
    });
  });
});
