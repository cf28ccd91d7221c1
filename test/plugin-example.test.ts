/**
 * The out-of-tree example sandbox (plugins/examples/sandbox-unshare) loaded by file path from
 * worker.toml, absolute on one worker and relative to the config file on the other, running real
 * compiles of a real cluster: every compile distributed, objects byte-identical to a plain build.
 */
import { spawnSync } from 'node:child_process';
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

const PLUGIN = path.resolve(
  import.meta.dirname,
  '..',
  'plugins',
  'examples',
  'sandbox-unshare',
  'dist',
  'index.js',
);
const usable = process.getuid?.() === 0 && have('gcc') && have('make') && have('unshare');

let sb: KilnSandbox;
let files: ClusterFiles;
let scheduler: ServerProcess;
const workers: ServerProcess[] = [];

/** A worker whose sandbox is the example plugin, named by `spec` in its worker.toml. */
function workerConfig(id: string, spec: string, slotBase: number): string {
  return writeWorkerConfig(
    files,
    id,
    scheduler.url,
    `sandbox = ${JSON.stringify(spec)}
[sandbox_config]
work_dir = "${path.join(files.dir, `${id}-jobs`)}"
slot_uid_base = ${slotBase}
`,
  );
}

const N = 8;
function writeProject(dir: string): void {
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(
    path.join(dir, 'common.h'),
    'struct acc { unsigned long v[8]; };\nunsigned long mix(unsigned long);\n',
  );
  for (let i = 0; i < N; i++) {
    fs.writeFileSync(
      path.join(dir, `f${i}.c`),
      `#include "common.h"
static unsigned long step(struct acc *a, unsigned long x) { a->v[x % 8] += x * ${i + 3}; return a->v[(x + ${i}) % 8]; }
unsigned long f${i}(unsigned long n) {
  struct acc a = {{0}};
  unsigned long r = 0;
  for (unsigned long k = 0; k < n; k++) r ^= step(&a, k + ${i});
  return r;
}
`,
    );
  }
  fs.writeFileSync(
    path.join(dir, 'Makefile'),
    `OBJS = ${Array.from({ length: N }, (_, i) => `f${i}.o`).join(' ')}
all: $(OBJS)
%.o: %.c common.h
\t$(CC) $(CFLAGS) -c $< -o $@
clean:
\trm -f $(OBJS)
`,
  );
}

function build(dir: string, cc: string): Map<string, Buffer> {
  expect(sb.run(['make', 'clean'], { cwd: dir }).status).toBe(0);
  const r = sb.run(['make', '-j4', `CC=${cc}`, 'CFLAGS=-O2 -g'], { cwd: dir });
  expect(r.status, r.stderr).toBe(0);
  const out = new Map<string, Buffer>();
  for (const f of fs.readdirSync(dir).filter((f) => f.endsWith('.o')))
    out.set(f, fs.readFileSync(path.join(dir, f)));
  return out;
}

describe.skipIf(!usable)('the example unshare sandbox plugin in a real cluster', () => {
  beforeAll(async () => {
    if (!fs.existsSync(PLUGIN)) throw new Error(`${PLUGIN} is missing: run npm run build first`);
    sb = new KilnSandbox();
    files = clusterFiles(path.join(sb.dir, 'cluster'));
    scheduler = await startServer(['scheduler', '--config', writeSchedulerConfig(files)]);
    workers.push(
      await startServer(['worker', '--config', workerConfig('u1', PLUGIN, 2_340_000_000)]),
      await startServer([
        'worker',
        '--config',
        workerConfig('u2', `./${path.relative(files.dir, PLUGIN)}`, 2_350_000_000),
      ]),
    );
    await waitForWorkers(scheduler.url, files.clientToken, 2);
    sb.writeConfig(clientDistConfig(files, scheduler.url, 'force_remote_build = true'));
  }, 120_000);

  afterAll(async () => {
    sb?.kiln(['--stop-server']);
    for (const w of workers) await w.stop();
    await scheduler?.stop();
    sb?.dispose();
  });

  it('workers report the plugin as their sandbox', async () => {
    const status = await clusterStatus(scheduler.url, files.clientToken);
    const seen = status.pools.flatMap((p) => p.workers).map((w) => [w.id, w.sandbox]);
    expect(seen.sort()).toEqual([
      ['u1', 'unshare'],
      ['u2', 'unshare'],
    ]);
  });

  it('compiles every file on the cluster, byte-identical to a plain local build', {
    timeout: 180_000,
  }, async () => {
    // One directory for both builds: -g records it.
    const dir = path.join(sb.work, 'proj');
    writeProject(dir);
    const plain = build(dir, 'gcc');
    expect(plain.size).toBe(N);
    sb.kiln(['--zero-stats']);
    const viaCluster = build(dir, `${sb.client} gcc`);
    expect([...viaCluster.keys()].sort()).toEqual([...plain.keys()].sort());
    expect([...plain].filter(([n, d]) => !viaCluster.get(n)!.equals(d)).map(([n]) => n)).toEqual([]);
    const s = sb.stats().stats as unknown as {
      misses: number;
      distCompiles: Record<string, number>;
      distErrors: Record<string, number>;
      distLocal: Record<string, number>;
    };
    expect(s.distErrors).toEqual({});
    expect(s.distLocal ?? {}).toEqual({});
    expect(s.misses).toBe(N);
    expect(Object.values(s.distCompiles).reduce((a, b) => a + b, 0)).toBe(N);
    // No job space or mount is left on the host.
    for (const id of ['u1', 'u2']) {
      const jobs = path.join(files.dir, `${id}-jobs`);
      expect(fs.existsSync(jobs) ? fs.readdirSync(jobs) : []).toEqual([]);
    }
    const mounts = spawnSync('cat', ['/proc/self/mounts'], { encoding: 'utf8' }).stdout;
    expect(mounts).not.toContain(files.dir);
  });
});
