/**
 * Fair shares across architectures, end to end (icecream#628): an "aarch64" client building with
 * Debian's x86_64-hosted aarch64 cross gcc keeps the only x86_64 worker's two slots busy with
 * `make -j4`; an x86_64 client that compiles one file after another must still get the worker for
 * all but (at most) its first compile, because the cross client, holding its share, leaves the
 * freed slot to the client waiting for it. Without fair shares the x86_64 client finds the pool
 * full almost every time.
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
import { KilnSandbox } from './helpers/kiln.js';
import { have } from './helpers/prereq.js';
import type { DistStats } from './helpers/resolver-cluster.js';

const ready = have('bwrap') && have('make') && have('aarch64-linux-gnu-gcc');

let files: ClusterFiles;
let scheduler: ServerProcess;
let worker: ServerProcess;
let pi: KilnSandbox;
let laptop: KilnSandbox;

/** A C file that takes gcc -O2 about a second. */
function slowSource(seed: number): string {
  const fns = [];
  for (let i = 0; i < 400; i++)
    fns.push(
      `unsigned long g${seed}_${i}(unsigned long x) { unsigned long r = x; for (int k = 0; k < ${(i % 7) + 3}; k++) r = r * ${i + 3} + (r >> ${(i % 13) + 1}) ^ k; return r; }`,
    );
  return `${fns.join('\n')}\n`;
}

describe.skipIf(!ready)('fair shares of a pool between clients', () => {
  beforeAll(async () => {
    pi = new KilnSandbox();
    laptop = new KilnSandbox();
    files = clusterFiles(path.join(pi.dir, 'cluster'));
    scheduler = await startServer(['scheduler', '--config', writeSchedulerConfig(files)]);
    worker = await startServer(['worker', '--config', writeWorkerConfig(files, 'x86', scheduler.url)]);
    await waitForWorkers(scheduler.url, files.clientToken, 1);
    for (const [sb, name] of [
      [pi, 'pi'],
      [laptop, 'laptop'],
    ] as const)
      sb.writeConfig(
        clientDistConfig(files, scheduler.url, `force_remote_build = true\nclient_name = "${name}"`),
      );
    // Both toolchains packed and on the worker before the race.
    pi.file('warm.c', 'int warm;\n');
    laptop.file('warm.c', 'int warm;\n');
    expect(pi.kiln(['aarch64-linux-gnu-gcc', '-c', 'warm.c', '-o', 'warm.o']).status).toBe(0);
    expect(laptop.kiln(['gcc', '-c', 'warm.c', '-o', 'warm.o']).status).toBe(0);
  }, 120_000);

  afterAll(async () => {
    for (const sb of [pi, laptop]) sb?.kiln(['--stop-server']);
    await worker?.stop();
    await scheduler?.stop();
    for (const sb of [pi, laptop]) sb?.dispose();
  });

  it('the cross-compiling client leaves the x86_64 client a slot', { timeout: 300_000 }, async () => {
    const piFiles = 32;
    for (let i = 0; i < piFiles; i++) pi.file(`p${i}.c`, slowSource(i));
    pi.file(
      'Makefile',
      `all: ${Array.from({ length: piFiles }, (_, i) => `p${i}.o`).join(' ')}\n%.o: %.c\n\t$(CC) -O2 -c $< -o $@\n`,
    );
    const laptopFiles = 4;
    for (let i = 0; i < laptopFiles; i++) laptop.file(`l${i}.c`, slowSource(100 + i));
    for (const sb of [pi, laptop]) sb.kiln(['--zero-stats']);
    const piBuild = pi.runAsync(['make', '-j4', `CC=${pi.client} aarch64-linux-gnu-gcc`]);
    let piDone = false;
    void piBuild.then(() => (piDone = true));
    // The cross client fills both slots first.
    const end = Date.now() + 30_000;
    while ((await clusterStatus(scheduler.url, files.clientToken)).totals.runningJobs < 2) {
      if (Date.now() > end) throw new Error('the cross client never filled the pool');
      await new Promise((r) => setTimeout(r, 20));
    }
    // Each laptop compile counts only when the cross client was at it from its start to its end (on
    // a loaded machine the cross build may finish first: those compiles prove nothing).
    let contended = 0;
    let distributedContended = 0;
    for (let i = 0; i < laptopFiles; i++) {
      const running = !piDone;
      const before = (laptop.stats().stats as unknown as DistStats).distCompiles.x86 ?? 0;
      const r = await laptop.runAsync([laptop.client, 'gcc', '-O2', '-c', `l${i}.c`, '-o', `l${i}.o`]);
      expect(r.status, r.stderr).toBe(0);
      if (running && !piDone) {
        contended++;
        const after = (laptop.stats().stats as unknown as DistStats).distCompiles.x86 ?? 0;
        distributedContended += after - before;
      }
    }
    expect((await piBuild).status).toBe(0);
    // The pool was contended for most of the laptop's compiles…
    expect(contended).toBeGreaterThanOrEqual(2);
    const l = laptop.stats().stats as unknown as DistStats;
    const p = pi.stats().stats as unknown as DistStats;
    // …and every one of those but perhaps the first (asked while the pool was full) ran on the worker.
    expect(distributedContended).toBeGreaterThanOrEqual(contended - 1);
    expect((l.distCompiles.x86 ?? 0) + (l.distLocal['no capacity'] ?? 0)).toBe(laptopFiles);
    expect(p.distLocal['no capacity'] ?? 0).toBeGreaterThan(0);
    expect(pi.log()).toContain(
      'the scheduler has no worker for this job: fair share: other clients are waiting',
    );
    expect((p.distCompiles.x86 ?? 0) + (p.distLocal['no capacity'] ?? 0)).toBe(piFiles);
    for (let i = 0; i < laptopFiles; i++) expect(fs.existsSync(path.join(laptop.work, `l${i}.o`))).toBe(true);
  });
});
