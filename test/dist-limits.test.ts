import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type ClusterFiles,
  clientDistConfig,
  clusterFiles,
  type ServerProcess,
  startServer,
  waitForWorkers,
  writeSchedulerConfig,
  writeWorkerConfig,
} from './helpers/cluster.js';
import { KilnSandbox } from './helpers/kiln.js';
import { have } from './helpers/prereq.js';

const ready = have('bwrap') && have('gcc');
let sb: KilnSandbox;
let files: ClusterFiles;
let scheduler: ServerProcess | undefined;
let worker: ServerProcess | undefined;

describe.skipIf(!ready)('job limits through the cluster', () => {
  beforeAll(async () => {
    sb = new KilnSandbox();
    files = clusterFiles(path.join(sb.dir, 'cluster'));
    scheduler = await startServer(['scheduler', '--config', writeSchedulerConfig(files, 0)]);
    // Objects of a few KiB: every job's output is over this worker's limit.
    const config = writeWorkerConfig(files, 'small', scheduler.url, '[limits]\noutput_size = "512"\n');
    worker = await startServer(['worker', '--config', config]);
    await waitForWorkers(scheduler.url, files.clientToken, 1, 15_000);
    sb.writeConfig(clientDistConfig(files, scheduler.url, 'force_remote_build = true'));
  }, 60_000);

  afterAll(async () => {
    sb?.kiln(['--stop-server']);
    await worker?.stop();
    await scheduler?.stop();
    sb?.dispose();
  });

  it('compiles locally what ran into a worker limit, with the exact object', { timeout: 60_000 }, () => {
    const body = Array.from({ length: 50 }, (_, i) => `int f${i}(int x) { return x * ${i} + ${i}; }`);
    sb.file('big.c', `${body.join('\n')}\n`);
    const plain = sb.run(['gcc', '-O1', '-c', 'big.c', '-o', 'big-plain.o']);
    expect(plain.status).toBe(0);
    expect(sb.read('big-plain.o').length).toBeGreaterThan(512);
    const r = sb.kiln(['gcc', '-O1', '-c', 'big.c', '-o', 'big.o']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toBe('');
    expect(sb.read('big.o').equals(sb.read('big-plain.o'))).toBe(true);
    const s = sb.stats().stats as unknown as { distErrors: Record<string, number>; distCompiles?: unknown };
    expect(s.distErrors['remote limit'], JSON.stringify(s)).toBe(1);
  });
});
