/**
 * A worker told to stop (SIGTERM, as systemd stops it) signs off: the scheduler takes it out of its
 * pool at once, not a worker_timeout later, while the job it was running finishes there and comes
 * back to the client. Real scheduler and worker processes, a real kiln daemon and gcc.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type ClusterFiles,
  clientDistConfig,
  clusterFetch,
  clusterFiles,
  clusterStatus,
  type ServerProcess,
  startServer,
  waitForWorkers,
  writeSchedulerConfig,
  writeWorkerConfig,
} from './helpers/cluster.js';
import { KilnSandbox } from './helpers/kiln.js';
import { have } from './helpers/prereq.js';

let sb: KilnSandbox;
let files: ClusterFiles;
let scheduler: ServerProcess;
let worker: ServerProcess;
let env: NodeJS.ProcessEnv;

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));
const status = () => clusterStatus(scheduler.url, files.clientToken);

/** About 2 s of gcc -O2 on this machine: long enough to be running when the worker is stopped. */
function slowSource(): string {
  const fns = Array.from(
    { length: 700 },
    (_, i) =>
      `int f${i}(int x){int s=0;for(int i=0;i<x;i++){s+=i*${i}^(s>>3);if(s%${i + 7}==3)s-=x;}return s;}`,
  );
  return `${fns.join('\n')}\n`;
}

describe.skipIf(!have('bwrap') || !have('gcc'))('a stopped worker signs off', () => {
  beforeAll(async () => {
    sb = new KilnSandbox();
    files = clusterFiles(path.join(sb.dir, 'cluster'));
    // The default worker_timeout (30 s): leaving the pool by timing out would take that long.
    const config = writeSchedulerConfig(files);
    fs.writeFileSync(config, fs.readFileSync(config, 'utf8').replace(/^worker_timeout = \d+\n/m, ''));
    scheduler = await startServer(['scheduler', '--config', config]);
    worker = await startServer(['worker', '--config', writeWorkerConfig(files, 'w1', scheduler.url)]);
    await waitForWorkers(scheduler.url, files.clientToken, 1);
    const file = path.join(sb.dir, 'dist.toml');
    fs.writeFileSync(file, clientDistConfig(files, scheduler.url, 'force_remote_build = true'));
    env = { ...sb.env, KILN_CONFIG: file };
  }, 120_000);

  afterAll(async () => {
    sb?.stopAndWait();
    await worker?.stop('SIGKILL');
    await scheduler?.stop();
    sb?.dispose();
  });

  it('leaves the pool within a second of SIGTERM; the job it was running completes', async () => {
    // The first job packages and uploads gcc; the one that matters then starts at once.
    sb.file('warm.c', 'int warm(int x) { return x + 1; }\n');
    expect(sb.kiln(['gcc', '-O2', '-c', 'warm.c'], { env }).status).toBe(0);
    sb.file('slow.c', slowSource());
    sb.run(['gcc', '-O2', '-c', 'slow.c', '-o', 'plain.o']);
    const compile = sb.runAsync([sb.client, 'gcc', '-O2', '-c', 'slow.c'], sb.work, env);
    const end = Date.now() + 60_000;
    while ((await status()).totals.runningJobs !== 1) {
      if (Date.now() > end) throw new Error('the job never started on the worker');
      await pause(20);
    }
    // Allocated; the run request follows within milliseconds and the compile takes seconds.
    await pause(300);
    const exited = new Promise<number | null>((resolve) => worker.proc.once('exit', (code) => resolve(code)));
    const stoppedAt = Date.now();
    worker.proc.kill('SIGTERM');
    let gone = Number.POSITIVE_INFINITY;
    while (Date.now() - stoppedAt < 5000) {
      if ((await status()).totals.workers === 0) {
        gone = Date.now() - stoppedAt;
        break;
      }
      await pause(20);
    }
    expect(gone).toBeLessThan(1000);
    expect(worker.proc.exitCode).toBeNull(); // still finishing its job
    // It takes nothing new meanwhile: a new connection is refused (or answered 503 while closing).
    const fresh = await clusterFetch(files)(`${worker.url}/healthz`).then(
      (r) => r.status,
      () => 'refused',
    );
    expect(['refused', 503]).toContain(fresh);

    const r = await compile;
    expect([r.status, r.stdout, r.stderr]).toEqual([0, '', '']);
    expect(sb.read('slow.o').equals(sb.read('plain.o'))).toBe(true);
    expect(await exited).toBe(0);
    const stats = JSON.parse(sb.kiln(['--show-stats', '--stats-format', 'json'], { env }).stdout).stats;
    // Both compiles ran on the worker; none fell back to a local compile.
    expect(stats.distCompiles).toEqual({ w1: 2 });
    expect(stats.distErrors).toEqual({});
    expect(stats.distRetries).toEqual({});
    const after = await status();
    expect(after.totals.workers).toBe(0);
    expect(after.totals.lostJobs).toBe(0);
    expect(after.recentJobs.map((j) => [j.workerId, j.state])).toEqual([
      ['w1', 'finished'],
      ['w1', 'finished'],
    ]);
    expect(worker.output()).toContain(
      'kiln-dist: signed off; finishing 1 running job(s), for at most 600 s\n',
    );
  }, 120_000);
});
