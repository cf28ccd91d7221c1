/**
 * A loopback cluster (scheduler + one bubblewrap worker with resolver plugins) and a kiln sandbox
 * whose daemon uses it, for the resolver end-to-end tests.
 */
import fs from 'node:fs';
import path from 'node:path';
import { expect } from 'vitest';
import {
  type ClusterFiles,
  clientDistConfig,
  clusterFiles,
  clusterStatus,
  type ServerProcess,
  startServer,
  writeSchedulerConfig,
  writeWorkerConfig,
} from './cluster.js';
import { KilnSandbox } from './kiln.js';

export interface DistStats {
  misses: number;
  distCompiles: Record<string, number>;
  distErrors: Record<string, number>;
  distLocal: Record<string, number>;
}

export const sum = (r: Record<string, number> = {}) => Object.values(r).reduce((a, b) => a + b, 0);

export class ResolverCluster {
  readonly sb = new KilnSandbox();
  files!: ClusterFiles;
  scheduler!: ServerProcess;
  readonly workers: ServerProcess[] = [];

  /** Starts the scheduler and one worker with `workerExtra` in its worker.toml. */
  async start(workerExtra: string): Promise<void> {
    this.files = clusterFiles(path.join(this.sb.dir, 'cluster'));
    this.scheduler = await startServer(['scheduler', '--config', writeSchedulerConfig(this.files)]);
    const config = writeWorkerConfig(this.files, 'w1', this.scheduler.url, workerExtra);
    this.workers.push(await startServer(['worker', '--config', config]));
    const end = Date.now() + 20_000;
    while ((await clusterStatus(this.scheduler.url, this.files.clientToken)).totals.workers < 1) {
      if (Date.now() > end) throw new Error('the worker did not join');
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Writes the client config (a [dist] table with `extra`) for a daemon started afresh, cache empty. */
  useClientConfig(extra: string): void {
    this.sb.kiln(['--stop-server']);
    // Every case compiles again: nothing comes from an earlier case's cache.
    fs.rmSync(this.sb.cacheDir, { recursive: true, force: true });
    fs.mkdirSync(path.join(this.sb.dir, 'config', 'kiln'), { recursive: true });
    fs.writeFileSync(
      path.join(this.sb.dir, 'config', 'kiln', 'config.toml'),
      clientDistConfig(this.files, this.scheduler.url, extra),
    );
  }

  stats(): DistStats {
    return this.sb.stats().stats as unknown as DistStats;
  }

  /** `make libz.a` in `dir` with CC=`cc`; the objects it made, by name. */
  buildZlib(dir: string, cc: string, cflags = '-O2 -g'): Map<string, Buffer> {
    expect(this.sb.run(['make', 'clean'], { cwd: dir }).status).toBe(0);
    const r = this.sb.run(['make', '-j2', 'libz.a', `CC=${cc}`, `CFLAGS=${cflags} -D_LARGEFILE64_SOURCE=1`], {
      cwd: dir,
    });
    expect(r.status, r.stderr).toBe(0);
    const out = new Map<string, Buffer>();
    for (const f of fs.readdirSync(dir).filter((f) => f.endsWith('.o')))
      out.set(f, fs.readFileSync(path.join(dir, f)));
    return out;
  }

  async stop(): Promise<void> {
    this.sb.kiln(['--stop-server']);
    for (const w of this.workers) await w.stop();
    await this.scheduler?.stop();
    this.sb.dispose();
  }
}

/** Names of objects whose bytes differ between two builds (both must have the same names). */
export function differing(a: Map<string, Buffer>, b: Map<string, Buffer>): string[] {
  expect([...b.keys()].sort()).toEqual([...a.keys()].sort());
  return [...a].filter(([n, d]) => !b.get(n)!.equals(d)).map(([n]) => n);
}
