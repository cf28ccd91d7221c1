/**
 * `sandbox = "docker"` end to end: a real scheduler and a real worker whose jobs run in warm Docker
 * containers build zlib with make -j4; every compile is distributed and the objects are
 * byte-identical to a plain gcc build. The engine is the running one, or a dockerd started here.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type ClusterFiles,
  clientDistConfig,
  clusterFiles,
  clusterStatus,
  type ServerProcess,
  startServer,
  waitForWorkers,
  writeSchedulerConfig,
  writeWorkerConfig,
} from './helpers/cluster.js';
import { type TestEngine, testEngine } from './helpers/dockerd.js';
import { KilnSandbox } from './helpers/kiln.js';
import { have } from './helpers/prereq.js';
import { debianSource } from './helpers/sources.js';

const hasDocker = have('dockerd');
let sb: KilnSandbox;
let files: ClusterFiles;
let scheduler: ServerProcess;
let worker: ServerProcess;
let engine: TestEngine | undefined;
let zlibSrc: string;

function objects(dir: string): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  for (const f of fs.readdirSync(dir).filter((f) => f.endsWith('.o')))
    out.set(f, fs.readFileSync(path.join(dir, f)));
  return out;
}

describe.skipIf(!hasDocker)('a loopback cluster with a Docker worker', () => {
  beforeAll(async () => {
    have('gcc');
    have('make');
    engine = await testEngine();
    if (!engine) throw new Error('no Docker engine runs and none can be started here');
    zlibSrc = debianSource('zlib');
    sb = new KilnSandbox();
    files = clusterFiles(path.join(sb.dir, 'cluster'));
    scheduler = await startServer(['scheduler', '--config', writeSchedulerConfig(files, 0)]);
    const workerId = `docker-${process.pid}`;
    worker = await startServer(
      [
        'worker',
        '--config',
        writeWorkerConfig(
          files,
          workerId,
          scheduler.url,
          `max_jobs = 4\nsandbox = "docker"\n[sandbox_config]\nengine_socket = "${engine.socket}"\n`,
        ),
      ],
      { timeoutMs: 120_000 },
    );
    await waitForWorkers(scheduler.url, files.clientToken, 1);
    sb.writeConfig(clientDistConfig(files, scheduler.url, 'force_remote_build = true'));
  }, 180_000);

  afterAll(async () => {
    sb?.kiln(['--stop-server']);
    await worker?.stop();
    await scheduler?.stop();
    sb?.dispose();
    await engine?.stop();
  }, 60_000);

  it('builds zlib with make -j4: every compile in a container, objects byte-identical', {
    timeout: 300_000,
  }, async () => {
    const dir = path.join(sb.work, 'zlib');
    fs.cpSync(zlibSrc, dir, { recursive: true });
    const conf = sb.run(['./configure', '--static'], { cwd: dir, env: { ...sb.env, CC: 'gcc' } });
    expect(conf.status, conf.stderr).toBe(0);
    const build = (cc: string) => {
      const r = sb.run(['make', '-j4', 'libz.a', `CC=${cc}`, 'CFLAGS=-O2 -g -D_LARGEFILE64_SOURCE=1'], {
        cwd: dir,
      });
      expect(r.status, r.stderr).toBe(0);
      return objects(dir);
    };
    const plain = build('gcc');
    expect(sb.run(['make', 'clean'], { cwd: dir }).status).toBe(0);
    sb.kiln(['--zero-stats']);
    const viaDocker = build(`${sb.client} gcc`);
    expect([...viaDocker.keys()].sort()).toEqual([...plain.keys()].sort());
    const differing = [...plain].filter(([n, d]) => !viaDocker.get(n)!.equals(d)).map(([n]) => n);
    expect(differing).toEqual([]);
    const s = sb.stats().stats as unknown as {
      misses: number;
      distCompiles: Record<string, number>;
      distErrors: Record<string, number>;
      distLocal: Record<string, number>;
    };
    expect(s.distErrors).toEqual({});
    expect(s.distLocal).toEqual({});
    expect(plain.size).toBeGreaterThan(10);
    expect(Object.values(s.distCompiles).reduce((a, b) => a + b, 0)).toBe(plain.size);
    const status = await clusterStatus(scheduler.url, files.clientToken);
    expect(status.pools.flatMap((p) => p.workers).map((w) => w.sandbox)).toEqual(['docker']);
  });
});
