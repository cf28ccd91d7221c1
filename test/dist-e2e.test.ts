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
import { freePort } from './helpers/servers/free-port.js';
import { debianSource } from './helpers/sources.js';

const _root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
let zlibSrc: string;

let sb: KilnSandbox;
let files: ClusterFiles;
let scheduler: ServerProcess;
let schedulerPort: number;
const workers = new Map<string, ServerProcess>();

const status = () => clusterStatus(scheduler.url, files.clientToken);

async function waitFor(what: string, check: () => Promise<boolean>, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await check().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

async function startWorker(id: string): Promise<void> {
  workers.set(id, await startServer(['worker', '--config', writeWorkerConfig(files, id, scheduler.url)]));
}

beforeAll(async () => {
  have('bwrap');
  have('gcc');
  have('make');
  zlibSrc = debianSource('zlib');
  sb = new KilnSandbox();
  files = clusterFiles(path.join(sb.dir, 'cluster'));
  schedulerPort = await freePort();
  scheduler = await startServer(['scheduler', '--config', writeSchedulerConfig(files, schedulerPort)]);
  await startWorker('w1');
  await startWorker('w2');
  await waitFor('two workers', async () => (await status()).totals.workers === 2);
  sb.writeConfig(clientDistConfig(files, scheduler.url, 'force_remote_build = true'));
}, 120_000);

afterAll(async () => {
  sb?.kiln(['--stop-server']);
  for (const w of workers.values()) await w.stop();
  await scheduler?.stop();
  sb?.dispose();
});

function objects(dir: string): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  for (const f of fs.readdirSync(dir).filter((f) => f.endsWith('.o')))
    out.set(f, fs.readFileSync(path.join(dir, f)));
  return out;
}

function build(dir: string, cc: string): Map<string, Buffer> {
  const r = sb.run(['make', '-j4', 'libz.a', `CC=${cc}`, 'CFLAGS=-O2 -g -D_LARGEFILE64_SOURCE=1'], {
    cwd: dir,
  });
  expect(r.status, r.stderr).toBe(0);
  return objects(dir);
}

/** A C file that takes gcc -O2 a few seconds, so a fault can be injected while it compiles. */
function slowSource(name: string): string {
  const body = Array.from(
    { length: 6000 },
    (_, i) => `  x = x * ${i + 3} + (x >> ${(i % 13) + 1}) + v[${i % 64}];`,
  ).join('\n');
  return sb.file(
    name,
    `unsigned long slow(unsigned long x, const unsigned long *v) {\n${body}\n  return x;\n}\n`,
  );
}

/**
 * Rebuilds zlib from clean with a daemon started fresh on a config file of its own (`extra` lines in
 * its [dist] table, no force_remote_build), `define` making every compile a miss; answers the stats
 * of that build and how many objects it made. The daemon is stopped again: later tests start it
 * with the default config file.
 */
function buildWithFreshDaemon(
  name: string,
  extra: string,
  define: string,
  envExtra: Record<string, string> = {},
) {
  const config = path.join(sb.dir, name);
  fs.writeFileSync(config, clientDistConfig(files, scheduler.url, extra));
  const env = { ...sb.env, KILN_CONFIG: config, ...envExtra };
  sb.kiln(['--stop-server']);
  const dir = path.join(sb.work, 'zlib');
  expect(sb.run(['make', 'clean'], { cwd: dir }).status).toBe(0);
  sb.kiln(['--zero-stats'], { env });
  const r = sb.run(
    ['make', '-j4', 'libz.a', `CC=${sb.client} gcc`, `CFLAGS=-O2 -g -D_LARGEFILE64_SOURCE=1 ${define}`],
    { cwd: dir, env },
  );
  expect(r.status, r.stderr).toBe(0);
  const stats = JSON.parse(sb.kiln(['--show-stats', '--stats-format', 'json'], { env }).stdout).stats as {
    misses: number;
    distCompiles: Record<string, number>;
    distLocal: Record<string, number>;
  };
  sb.kiln(['--stop-server'], { env });
  return { stats, objectCount: objects(dir).size };
}

const sum = (r: Record<string, number>) => Object.values(r).reduce((a, b) => a + b, 0);

/** Whether a `comm` process runs below `pid` (a worker's sandboxed compiler, seen from the host). */
function runsBelow(pid: number, comm: string): boolean {
  const parent = new Map<number, number>();
  const named: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue; // gone meanwhile
    }
    const close = stat.lastIndexOf(')');
    parent.set(Number(entry), Number(stat.slice(close + 2).split(' ')[1]));
    if (stat.slice(stat.indexOf('(') + 1, close) === comm) named.push(Number(entry));
  }
  return named.some((p) => {
    for (let up = parent.get(p); up !== undefined && up > 1; up = parent.get(up)) if (up === pid) return true;
    return false;
  });
}

/** How much each counter grew; counters a daemon without retries does not have count as none. */
const delta = (a: Record<string, number> = {}, b: Record<string, number> = {}) =>
  Object.fromEntries(
    [...new Set([...Object.keys(a), ...Object.keys(b)])]
      .map((k) => [k, (a[k] ?? 0) - (b[k] ?? 0)] as const)
      .filter(([, n]) => n !== 0),
  );

interface DistStats {
  distCompiles: Record<string, number>;
  distErrors: Record<string, number>;
  distLocal: Record<string, number>;
  distRetries: Record<string, number>;
}

/** Per worker: toolchains held and toolchain uploads received, once every worker heartbeated since now. */
async function toolchainsPerWorker(): Promise<[string, number, number][]> {
  const since = Date.now();
  let seen: [string, number, number][] = [];
  await waitFor('a heartbeat from every worker', async () => {
    const workers = (await status()).pools.flatMap((p) => p.workers);
    seen = workers.map((w) => [w.id, w.toolchains, w.toolchainUploads]);
    return workers.length === 2 && workers.every((w) => w.lastHeartbeatMsAgo < Date.now() - since);
  });
  return seen.sort();
}

describe('a loopback cluster with two bubblewrap workers', () => {
  it('builds zlib with make -j4: every compile distributed, objects byte-identical, the toolchain sent once per worker', async () => {
    // One directory for both builds: -g records it.
    const dir = path.join(sb.work, 'zlib');
    fs.cpSync(zlibSrc, dir, { recursive: true });
    const conf = sb.run(['./configure', '--static'], { cwd: dir, env: { ...sb.env, CC: 'gcc' } });
    expect(conf.status, conf.stderr).toBe(0);
    const plain = build(dir, 'gcc');
    expect(sb.run(['make', 'clean'], { cwd: dir }).status).toBe(0);
    sb.kiln(['--zero-stats']);
    const viaCluster = build(dir, `${sb.client} gcc`);
    expect([...viaCluster.keys()].sort()).toEqual([...plain.keys()].sort());
    const differing = [...plain].filter(([n, d]) => !viaCluster.get(n)!.equals(d)).map(([n]) => n);
    expect(differing).toEqual([]);
    const s = sb.stats().stats as unknown as {
      misses: number;
      hitsDirect: number;
      distCompiles: Record<string, number>;
      distErrors: Record<string, number>;
    };
    expect(s.distErrors).toEqual({});
    expect(plain.size).toBeGreaterThan(10);
    expect(s.misses).toBe(plain.size);
    expect(sum(s.distCompiles)).toBe(plain.size);
    expect(Object.keys(s.distCompiles).sort()).toEqual(['w1', 'w2']);
    // Each worker holds the toolchain and received it once, though jobs for it ran there in parallel.
    expect(await toolchainsPerWorker()).toEqual([
      ['w1', 1, 1],
      ['w2', 1, 1],
    ]);
    // Warm: all hits, nothing sent anywhere.
    expect(sb.run(['make', 'clean'], { cwd: dir }).status).toBe(0);
    build(dir, `${sb.client} gcc`);
    const warm = sb.stats().stats as unknown as typeof s;
    expect(warm.misses).toBe(s.misses);
    expect(warm.hitsDirect - s.hitsDirect).toBe(plain.size);
    expect(warm.distCompiles).toEqual(s.distCompiles);
  });

  it('distributes every compile after a daemon restart without force_remote_build: the stored package is found', async () => {
    // Tiny compiles kept local would count here: this test is about finding the stored package.
    const { stats: s, objectCount } = buildWithFreshDaemon(
      'defaults.toml',
      'keep_tiny_local = false',
      '-DAGAIN',
    );
    expect(objectCount).toBeGreaterThan(10);
    expect(s.misses).toBe(objectCount);
    expect(s.distLocal).toEqual({});
    expect(sum(s.distCompiles)).toBe(objectCount);
    // The workers still hold it: the new daemon sends it nowhere again.
    expect(await toolchainsPerWorker()).toEqual([
      ['w1', 1, 1],
      ['w2', 1, 1],
    ]);
  });

  it("learns from the workers' job times which compiles are tiny, and keeps only those local", () => {
    const logStart = sb.log().length;
    const { stats: s, objectCount } = buildWithFreshDaemon('tiny.toml', '', '-DTINY', {
      KILN_LOG_LEVEL: 'debug',
    });
    expect(s.misses).toBe(objectCount);
    const remote = sum(s.distCompiles);
    const tiny = s.distLocal['tiny compile (faster locally)'] ?? 0;
    // Every miss ran on the cluster or was kept local as tiny; nothing else.
    expect(Object.keys(s.distLocal).filter((k) => !k.startsWith('tiny'))).toEqual([]);
    expect(remote + tiny).toBe(s.misses);
    expect(remote).toBeGreaterThanOrEqual(3);
    // The estimates come from real job times the workers reported, and each decision follows them.
    const estimates = [
      ...sb
        .log()
        .slice(logStart)
        .matchAll(/~([\d.]+) ms to compile, ~([\d.]+) ms of cluster overhead/g),
    ];
    expect(estimates.length).toBeGreaterThan(0);
    const faster = estimates.filter(([, c, o]) => Number(c) < Number(o)).length;
    expect(faster).toBe(tiny);
    for (const [, c, o] of estimates) {
      expect(Number(c)).toBeGreaterThan(0);
      expect(Number(o)).toBeGreaterThan(0);
    }
  });

  it('--dist-status and --dist-test-conn show the cluster and who accepts this client', () => {
    const st = sb.kiln(['--dist-status', '--json']);
    expect(st.status, st.stderr).toBe(0);
    const json = JSON.parse(st.stdout);
    expect(json.schedulerUrl).toBe(scheduler.url);
    expect(json.pools[0].workers.map((w: { id: string }) => w.id)).toEqual(['w1', 'w2']);
    // The whole cluster talks HTTPS: every worker's certificate is vouched for by the scheduler.
    expect(scheduler.url).toMatch(/^https:/);
    for (const w of json.pools[0].workers as { url: string; certSha256?: string }[]) {
      expect(w.url).toMatch(/^https:/);
      expect(w.certSha256).toMatch(/^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
    }
    const ok = sb.kiln(['--dist-test-conn']);
    expect(ok.status, ok.stdout).toBe(0);
    expect(ok.stdout).toMatch(
      /^scheduler .*: ok \(2 workers, 1 pools\)\nworker w1 .*: ok\nworker w2 .*: ok\n$/,
    );
    const bad = path.join(sb.dir, 'bad.toml');
    fs.writeFileSync(bad, clientDistConfig({ ...files, clientToken: 'wrong' }, scheduler.url));
    const refused = sb.kiln(['--dist-test-conn'], { env: { ...sb.env, KILN_CONFIG: bad } });
    expect(refused.status).toBe(1);
    expect(refused.stdout).toMatch(
      /FAILED: scheduler refused credentials: 401: client: missing or invalid credentials; check the client token/,
    );
    expect(refused.stdout).not.toContain('{');
    const noDist = path.join(sb.dir, 'nodist.toml');
    fs.writeFileSync(noDist, '');
    const none = sb.kiln(['--dist-status'], { env: { ...sb.env, KILN_CONFIG: noDist } });
    expect(none.status).toBe(2);
    expect(none.stderr).toMatch(/no cluster configured/);
  });

  it('gives the exact diagnostics of a local compile for errors and warnings', () => {
    // Remote diagnostics would quote the wrong source lines: calls with any go through the local compiler.
    sb.file('broken.c', 'int f(void) { return undefined_thing; }\n');
    sb.file('warns.c', 'int g(int x) { int unused; return x; }\n');
    const w = sb.kiln(['gcc', '-Wall', '-c', 'warns.c', '-o', 'warns.o']);
    expect(w.status).toBe(0);
    expect(w.stderr).toBe(sb.run(['gcc', '-Wall', '-c', 'warns.c', '-o', 'warns-local.o']).stderr);
    expect(w.stderr).toContain('int g(int x) { int unused; return x; }');
    const r = sb.kiln(['gcc', '-c', 'broken.c', '-o', 'broken.o']);
    const local = sb.run(['gcc', '-c', 'broken.c', '-o', 'broken-local.o']);
    expect(r.status).toBe(1);
    expect(r.stderr).toBe(local.stderr);
    expect(fs.existsSync(path.join(sb.work, 'broken.o'))).toBe(false);
  });

  it('retries a job whose worker is killed mid-compile once on the other worker (sccache#2277)', async () => {
    // A first compile packages the toolchain and leaves it on one worker, which the slow job then prefers.
    sb.file('warm.c', 'int warm(int x) { return x + 1; }\n');
    expect(sb.kiln(['gcc', '-O2', '-c', 'warm.c']).status).toBe(0);
    slowSource('slow0.c');
    expect(sb.run(['gcc', '-O2', '-c', 'slow0.c', '-o', 'slow0-plain.o']).status).toBe(0);
    const before = sb.stats().stats as unknown as DistStats;
    const compile = sb.runAsync([sb.client, 'gcc', '-O2', '-c', 'slow0.c', '-o', 'slow0.o']);
    let victim: [string, ServerProcess] | undefined;
    await waitFor(
      'cc1 to run in a worker',
      async () => {
        victim = [...workers].find(([, w]) => runsBelow(w.proc.pid!, 'cc1'));
        return victim !== undefined;
      },
      30_000,
    );
    const [deadId, dead] = victim!;
    const [otherId] = [...workers.keys()].filter((id) => id !== deadId);
    await dead.stop('SIGKILL');
    const r = await compile;
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toBe('');
    expect(sb.read('slow0.o').equals(sb.read('slow0-plain.o'))).toBe(true);
    const after = sb.stats().stats as unknown as DistStats;
    // One retry, done by the other worker; nothing compiled locally, no error left over.
    expect(delta(after.distRetries, before.distRetries)).toEqual({ retried: 1, succeeded: 1 });
    expect(delta(after.distCompiles, before.distCompiles)).toEqual({ [otherId!]: 1 });
    expect(delta(after.distErrors, before.distErrors)).toEqual({});
    expect(delta(after.distLocal, before.distLocal)).toEqual({});
    expect(sb.kiln(['--show-stats']).stdout).toMatch(
      /Retried on another worker \(worker lost\)\s+1\n {2}succeeded there\s+1\n {2}compiled locally\s+0\n/,
    );
    expect(sb.log()).toMatch(
      new RegExp(`remote compile failed \\(worker unreachable: ${dead.url}.*\\); trying another worker`),
    );
    await startWorker(deadId);
    await waitFor('the worker back', async () => (await status()).totals.workers === 2);
  });

  it('survives a worker killed mid-job: the compile finishes locally with the right object', async () => {
    const logStart = sb.log().length;
    const before = sb.stats().stats as unknown as DistStats;
    slowSource('slow1.c');
    const plain = sb.run(['gcc', '-O2', '-c', 'slow1.c', '-o', 'slow1-plain.o']);
    expect(plain.status).toBe(0);
    const compile = sb.runAsync([sb.client, 'gcc', '-O2', '-c', 'slow1.c', '-o', 'slow1.o']);
    await waitFor('the job to start', async () => (await status()).totals.runningJobs > 0);
    // Kill whichever worker holds it: both, to be sure; bring them back afterwards.
    for (const w of workers.values()) w.proc.kill('SIGKILL');
    const r = await compile;
    expect(r.status, r.stderr).toBe(0);
    expect(sb.read('slow1.o').equals(sb.read('slow1-plain.o'))).toBe(true);
    const after = sb.stats().stats as unknown as DistStats;
    // Tried once more on the other worker, dead too, then compiled locally.
    expect(delta(after.distRetries, before.distRetries)).toEqual({ retried: 1, 'compiled locally': 1 });
    expect(delta(after.distErrors, before.distErrors)).toEqual({ 'worker unreachable': 1 });
    expect(sb.log().slice(logStart)).toMatch(/trying another worker/);
    await startWorker('w1');
    await startWorker('w2');
    await waitFor('workers back', async () => (await status()).totals.workers === 2);
  });

  it('survives the scheduler restarting mid-build, and distributes again once workers re-register', async () => {
    slowSource('slow2.c');
    expect(sb.run(['gcc', '-O2', '-c', 'slow2.c', '-o', 'slow2-plain.o']).status).toBe(0);
    const compile = sb.runAsync([sb.client, 'gcc', '-O2', '-c', 'slow2.c', '-o', 'slow2.o']);
    await waitFor('the job to start', async () => (await status()).totals.runningJobs > 0);
    await scheduler.stop('SIGKILL');
    scheduler = await startServer(['scheduler', '--config', writeSchedulerConfig(files, schedulerPort)]);
    const r = await compile;
    expect(r.status, r.stderr).toBe(0);
    expect(sb.read('slow2.o').equals(sb.read('slow2-plain.o'))).toBe(true);
    await waitFor('workers to re-register', async () => (await status()).totals.workers === 2);
    const before = sb.stats().stats as unknown as { distCompiles: Record<string, number> };
    sb.file('after.c', 'int after(int x) { return x * 7; }\n');
    expect(sb.kiln(['gcc', '-O2', '-c', 'after.c', '-o', 'after.o']).status).toBe(0);
    const after = sb.stats().stats as unknown as { distCompiles: Record<string, number> };
    expect(sum(after.distCompiles)).toBe(sum(before.distCompiles) + 1);
  });
});
