/** What the conformance kit cannot see from outside: the container's settings, warm reuse, clean-up, images, engine loss. */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { bufferedResult, DEFAULT_JOB_LIMITS, type SandboxJob } from '@kiln/plugins';
import { buildProbe } from '@kiln/plugins/conformance';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDockerd, type TestEngine, testEngine } from '../../test/helpers/dockerd.js';
import { have } from '../../test/helpers/prereq.js';
import { DockerSandbox, type DockerSandboxOptions } from '../src/docker-sandbox.js';

const cwd = '/src/proj';
let tmp: string;
let root: string;
let probe: Buffer;
let engine: TestEngine | undefined;
const open: DockerSandbox[] = [];

function api(socket: string, method: string, p: string): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath: socket, path: p, method }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString();
        resolve({ status: res.statusCode ?? 0, body: text ? JSON.parse(text) : undefined });
      });
    });
    req.on('error', reject);
    req.end();
  });
}

const sandbox = (over: Partial<DockerSandboxOptions> = {}) => {
  const s = new DockerSandbox({
    engine_socket: engine!.socket,
    work_dir: path.join(tmp, 'work'),
    workerId: `unit-${process.pid}`,
    hostTriple: 'x86_64-unknown-linux-gnu',
    maxJobs: 2,
    image_cache_size: 20 * 1024 ** 3,
    idle_timeout: 600,
    max_output_bytes: 1024 * 1024,
    max_log_bytes: 64 * 1024,
    api_timeout: 30,
    ...over,
  });
  open.push(s);
  return s;
};

const probeJob = (args: string[], over: Partial<SandboxJob> = {}): SandboxJob => ({
  id: 'unit',
  toolchainRoot: root,
  cwd,
  argv: [`${cwd}/probe`, ...args],
  env: {},
  inputs: [{ path: `${cwd}/probe`, data: probe, executable: true }],
  outputs: [],
  timeoutMs: 20_000,
  limits: DEFAULT_JOB_LIMITS,
  ...over,
});

const mine = (worker: string) => encodeURIComponent(JSON.stringify({ label: [`dev.kiln.worker=${worker}`] }));

describe.skipIf(!have('dockerd'))('DockerSandbox', () => {
  beforeAll(async () => {
    engine = await testEngine();
    if (!engine) throw new Error('no Docker engine runs and none can be started here');
    tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'kiln-docker-unit-'));
    await fs.chmod(tmp, 0o755);
    // The probe is static: a root with one file in it is a toolchain.
    root = path.join(tmp, 'roots', 'ab'.repeat(32));
    await fs.mkdir(path.join(root, 'etc'), { recursive: true });
    await fs.writeFile(path.join(root, 'etc', 'toolchain'), 'unit');
    probe = await buildProbe(tmp);
  }, 120_000);
  afterAll(async () => {
    for (const s of open) await s.close().catch(() => {});
    if (tmp) await fs.rm(tmp, { recursive: true, force: true });
    await engine?.stop();
  }, 60_000);

  it('runs jobs in a hardened container, reused warm from one job to the next', async () => {
    const s = sandbox();
    const first = await bufferedResult(
      await s.run(probeJob(['write', 'out.txt', 'one'], { outputs: [`${cwd}/out.txt`] })),
    );
    expect(first.exitCode, first.stderr.toString()).toBe(0);
    expect(s.warmCount()).toBe(1);
    const list = await api(engine!.socket, 'GET', `/containers/json?filters=${mine(`unit-${process.pid}`)}`);
    expect(list.body).toHaveLength(1);
    const c = (await api(engine!.socket, 'GET', `/containers/${list.body[0].Id}/json`)).body;
    expect(c.Config.User).toBe(
      process.getuid?.() === 0 ? '65534:65534' : `${process.getuid?.()}:${process.getgid?.()}`,
    );
    expect(c.HostConfig).toMatchObject({
      NetworkMode: 'none',
      ReadonlyRootfs: true,
      CapDrop: ['ALL'],
      SecurityOpt: ['no-new-privileges'],
      PidsLimit: DEFAULT_JOB_LIMITS.processes + 1,
      Memory: DEFAULT_JOB_LIMITS.memoryBytes,
      MemorySwap: DEFAULT_JOB_LIMITS.memoryBytes,
      Privileged: false,
    });
    expect(c.HostConfig.NanoCpus).toBeGreaterThan(0);
    // The engine's default seccomp profile stays on.
    expect(c.HostConfig.SecurityOpt.join(' ')).not.toContain('seccomp');
    expect(c.Config.Labels['dev.kiln.worker']).toBe(`unit-${process.pid}`);
    const image = (await api(engine!.socket, 'GET', `/images/${c.Image}/json`)).body;
    expect(image.Config.Labels).toMatchObject({
      'dev.kiln.worker': `unit-${process.pid}`,
      'dev.kiln.arch': 'x86_64-unknown-linux-gnu',
      'dev.kiln.toolchain': 'ab'.repeat(32),
    });
    // The second job runs in the same container and finds nothing of the first.
    const second = await bufferedResult(await s.run(probeJob(['read', `${cwd}/out.txt`, '/tmp'])));
    expect(second.stdout.toString()).toContain(`DENIED read ${cwd}/out.txt`);
    expect(second.stdout.toString()).not.toMatch(/ENTRY \/tmp (?!\.\.?\n)/);
    const after = await api(engine!.socket, 'GET', `/containers/json?filters=${mine(`unit-${process.pid}`)}`);
    expect(after.body.map((x: { Id: string }) => x.Id)).toEqual([list.body[0].Id]);
  });

  it('kills what a job leaves running before the next job', async () => {
    const s = sandbox({ workerId: `leftover-${process.pid}` });
    // "sleep" forks: the child outlives a parent killed at its time limit only if nothing kills it.
    const r = await bufferedResult(await s.run(probeJob(['sleep', 'kiln-left'], { timeoutMs: 500 })));
    expect(r.timedOut).toBe(true);
    expect(s.warmCount()).toBe(1);
    const next = await bufferedResult(await s.run(probeJob(['exit', '0'])));
    expect(next.exitCode).toBe(0);
    const ps = execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' });
    expect(ps).not.toContain('kiln-left');
  });

  it('reports a command the toolchain lacks as a sandbox failure', async () => {
    const s = sandbox();
    await expect(s.run(probeJob([], { argv: ['/usr/bin/not-in-the-toolchain'] }))).rejects.toMatchObject({
      code: 'KILN_ERR_SANDBOX_FAILED',
      message: expect.stringContaining('kiln-runner: execve /usr/bin/not-in-the-toolchain'),
    });
  });

  it('removes at start only the leftovers of its own worker id', async () => {
    const a = sandbox({ workerId: `left-a-${process.pid}` });
    const b = sandbox({ workerId: `left-b-${process.pid}` });
    await bufferedResult(await a.run(probeJob(['exit', '0'])));
    await bufferedResult(await b.run(probeJob(['exit', '0'])));
    const count = async (w: string) =>
      (await api(engine!.socket, 'GET', `/containers/json?all=1&filters=${mine(w)}`)).body.length;
    expect(await count(`left-a-${process.pid}`)).toBe(1);
    // A restarted worker "a" (its warm container is still there): it removes its own, not b's.
    const again = sandbox({ workerId: `left-a-${process.pid}` });
    expect((await again.probe()).ok).toBe(true);
    expect(await count(`left-a-${process.pid}`)).toBe(0);
    expect(await count(`left-b-${process.pid}`)).toBe(1);
  });

  it('removes the least recently used images past image_cache_size', async () => {
    const worker = `lru-${process.pid}`;
    const roots = ['a', 'b', 'c'].map((x) => path.join(tmp, 'roots', x.repeat(64)));
    for (const r of roots) {
      await fs.mkdir(r, { recursive: true });
      await fs.writeFile(path.join(r, 'blob'), Buffer.alloc(1024 * 1024, path.basename(r)[0]));
    }
    const s = sandbox({ workerId: worker, image_cache_size: 2.5 * 1024 * 1024, warm_containers: 0 });
    for (const r of roots) {
      const res = await bufferedResult(await s.run(probeJob(['exit', '0'], { toolchainRoot: r })));
      expect(res.exitCode).toBe(0);
    }
    const labels = (await s.images()).map((i) => i.Labels?.['dev.kiln.toolchain']);
    expect(labels.sort()).toEqual(['b'.repeat(64), 'c'.repeat(64)]);
  });

  it.skipIf(process.getuid?.() !== 0)(
    'fails the job when the engine dies during it, and recovers when the engine returns',
    { timeout: 240_000 },
    async () => {
      const own = await startDockerd(path.join(tmp, 'own-dockerd'));
      try {
        const s = sandbox({ engine_socket: own.socket, workerId: `dies-${process.pid}` });
        expect((await bufferedResult(await s.run(probeJob(['exit', '0'])))).exitCode).toBe(0);
        const running = s.run(probeJob(['sleep', 'kiln-engine-dies'], { timeoutMs: 60_000 })).catch((e) => e);
        await new Promise((r) => setTimeout(r, 500));
        await own.stop();
        expect(await running).toMatchObject({ code: 'KILN_ERR_SANDBOX_FAILED' });
        await expect(s.run(probeJob(['exit', '0']))).rejects.toMatchObject({
          code: 'KILN_ERR_SANDBOX_FAILED',
          message: expect.stringContaining('no container engine answers'),
        });
        const back = await startDockerd(path.join(tmp, 'own-dockerd'));
        try {
          const r = await bufferedResult(await s.run(probeJob(['exit', '0'])));
          expect(r.exitCode).toBe(0);
        } finally {
          await s.close();
          await back.stop();
        }
      } finally {
        await own.stop();
      }
    },
  );
});
