/**
 * Operating a real loopback cluster: /healthz and /metrics on the scheduler and a worker, the
 * address a worker prints, a port in use, workers back soon after a scheduler restart, and
 * kiln-dist's own help.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type ClusterFiles,
  clusterFetch,
  clusterFiles,
  clusterStatus,
  KILN_DIST,
  type ServerProcess,
  startServer,
  writeSchedulerConfig,
  writeWorkerConfig,
} from './helpers/cluster.js';
import { removeTree } from './helpers/kiln.js';
import { have } from './helpers/prereq.js';
import { parsePrometheus } from './helpers/prometheus.js';
import { freePort } from './helpers/servers/free-port.js';

const METRICS_TOKEN = 'worker-metrics-token';
let dir: string;
let files: ClusterFiles;
let schedulerConfig: string;
let schedulerPort: number;
let scheduler: ServerProcess;
let worker: ServerProcess;
const started: ServerProcess[] = [];

async function start(args: string[]): Promise<ServerProcess> {
  const s = await startServer(args);
  started.push(s);
  return s;
}

const workersNow = () => clusterStatus(scheduler.url, files.clientToken).then((s) => s.totals.workers);

async function waitFor(what: string, check: () => Promise<boolean>, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await check().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out waiting for ${what}`);
}

function dist(args: string[]) {
  const r = spawnSync(process.execPath, [KILN_DIST, ...args], { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('kiln-dist help', () => {
  it('points at its own help, and lists the auth and tls commands', () => {
    const unknown = dist(['frobnicate']);
    expect(unknown.status).toBe(2);
    expect(unknown.stderr).toBe('kiln-dist: unknown command "frobnicate" (see kiln-dist --help)\n');
    const auth = dist(['auth', '--help']);
    expect(auth.status).toBe(0);
    for (const sub of ['generate-jwt-hs256-key', 'generate-jwt-hs256-worker-token', 'rotate-worker-token'])
      expect(auth.stdout).toContain(`kiln-dist auth ${sub}`);
    expect(dist(['tls', '--help']).stdout).toContain('kiln-dist tls fingerprint --config scheduler.toml');
    expect(dist(['auth', 'frob']).stderr).toBe(
      'kiln-dist: unknown auth command "frob" (see kiln-dist auth --help)\n',
    );
    expect(dist(['scheduler']).stderr).toBe(
      'kiln-dist: kiln-dist scheduler needs --config FILE (see kiln-dist --help)\n',
    );
  });
});

describe.skipIf(!have('bwrap'))('operating a cluster', () => {
  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-dist-ops-'));
    files = clusterFiles(dir);
    schedulerPort = await freePort();
    // The default worker_timeout (30 s): workers are asked to heartbeat every 7.5 s.
    schedulerConfig = writeSchedulerConfig(
      files,
      schedulerPort,
      'log_level = "info"\nlog_file = "scheduler.log"',
    );
    fs.writeFileSync(
      schedulerConfig,
      fs.readFileSync(schedulerConfig, 'utf8').replace(/^worker_timeout = \d+\n/m, ''),
    );
    scheduler = await start(['scheduler', '--config', schedulerConfig]);
    fs.writeFileSync(path.join(dir, 'metrics.token'), `${METRICS_TOKEN}\n`, { mode: 0o600 });
    worker = await start([
      'worker',
      '--config',
      writeWorkerConfig(
        files,
        'w1',
        scheduler.url,
        `metrics_token_file = "${path.join(dir, 'metrics.token')}"`,
      ),
    ]);
    await waitFor('the worker', async () => (await workersNow()) === 1);
  }, 60_000);

  afterAll(async () => {
    for (const s of started) await s.stop('SIGKILL');
    if (dir) removeTree(dir);
  });

  it('a worker on port 0 prints the port it got', () => {
    const m = /kiln-dist: worker w1 listening on https:\/\/127\.0\.0\.1:(\d+)\n/.exec(worker.output());
    expect(m, worker.output()).not.toBeNull();
    expect(Number(m![1])).toBeGreaterThan(0);
    expect(worker.url).toBe(`https://127.0.0.1:${m![1]}`);
  });

  it('answers /healthz without credentials and /metrics only with them', async () => {
    const fetch = clusterFetch(files);
    const sh = await fetch(`${scheduler.url}/healthz`);
    expect(sh.status).toBe(200);
    expect(JSON.parse(sh.text)).toMatchObject({ status: 'ok', workers: 1 });
    const wh = await fetch(`${worker.url}/healthz`);
    expect(JSON.parse(wh.text)).toMatchObject({ status: 'ok', id: 'w1' });
    expect((await fetch(`${scheduler.url}/metrics`)).status).toBe(401);
    expect((await fetch(`${worker.url}/metrics`)).status).toBe(401);
    const bearer = (t: string) => ({ headers: { authorization: `Bearer ${t}` } });
    expect((await fetch(`${worker.url}/metrics`, bearer(files.clientToken))).status).toBe(401);
    const w = await fetch(`${worker.url}/metrics`, bearer(METRICS_TOKEN));
    expect(w.status).toBe(200);
    const wm = parsePrometheus(w.text);
    expect(wm.value('kiln_worker_slots')).toBe(2);
    expect(wm.value('kiln_worker_running_jobs')).toBe(0);
    // No secret of either server is in what they expose.
    const s = await fetch(`${scheduler.url}/metrics`, bearer(files.clientToken));
    for (const secret of [files.clientToken, files.secret, METRICS_TOKEN]) {
      expect(s.text).not.toContain(secret);
      expect(w.text).not.toContain(secret);
    }
  });

  it('counts allocations, no-capacity answers and ended jobs by pool on the scheduler', async () => {
    const fetch = clusterFetch(files);
    const status = await clusterStatus(scheduler.url, files.clientToken);
    const pool = status.pools[0]!.hostTriple;
    const post = (p: string, token: string, body: unknown) =>
      fetch(`${scheduler.url}/api/v1${p}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
    const toolchain = (hostTriples: string[]) => ({ kind: 'archive', digest: 'a'.repeat(64), hostTriples });
    const jobs: string[] = [];
    for (let i = 0; i < 2; i++) {
      const r = await post('/jobs', files.clientToken, { toolchain: toolchain([pool]) });
      const body = JSON.parse(r.text) as { status: string; jobId: string };
      expect(body.status, r.text).toBe('assigned');
      jobs.push(body.jobId);
    }
    // max_jobs = 2: a third is refused for capacity, and so is a pool nobody serves.
    for (const triples of [[pool], ['sparc-unknown-linux-gnu']]) {
      const r = await post('/jobs', files.clientToken, { toolchain: toolchain(triples) });
      expect(JSON.parse(r.text).status).toBe('no_capacity');
    }
    const mid = parsePrometheus(
      (await fetch(`${scheduler.url}/metrics`, { headers: { authorization: `Bearer ${files.clientToken}` } }))
        .text,
    );
    expect(mid.value('kiln_scheduler_running_jobs', { pool })).toBe(2);
    expect(mid.value('kiln_scheduler_worker_running_jobs', { pool, worker: 'w1' })).toBe(2);
    const workerToken = fs.readFileSync(path.join(dir, 'w1.token'), 'utf8').trim();
    for (const [i, jobId] of jobs.entries()) {
      const r = await post(`/jobs/${jobId}/finished`, workerToken, { workerId: 'w1', failed: i === 1 });
      expect(r.status, r.text).toBe(204);
    }
    const res = await fetch(`${scheduler.url}/metrics`, {
      headers: { authorization: `Bearer ${files.clientToken}` },
    });
    expect(res.status).toBe(200);
    const m = parsePrometheus(res.text);
    expect(m.types.get('kiln_scheduler_job_duration_seconds')).toBe('histogram');
    expect(m.value('kiln_scheduler_allocations_total', { pool })).toBe(2);
    expect(m.value('kiln_scheduler_no_capacity_total', { pool })).toBe(1);
    expect(m.value('kiln_scheduler_no_capacity_total', { pool: 'sparc-unknown-linux-gnu' })).toBe(1);
    expect(m.value('kiln_scheduler_jobs_ended_total', { pool, state: 'finished' })).toBe(1);
    expect(m.value('kiln_scheduler_jobs_ended_total', { pool, state: 'failed' })).toBe(1);
    expect(m.value('kiln_scheduler_job_duration_seconds_count', { pool })).toBe(2);
    expect(m.value('kiln_scheduler_workers', { pool })).toBe(1);
    expect(m.value('kiln_scheduler_slots', { pool })).toBe(2);
    expect(m.value('kiln_scheduler_running_jobs', { pool })).toBe(0);
  });

  it('logs JSON lines to log_file at its log_level, without tokens', () => {
    const lines = fs
      .readFileSync(path.join(dir, 'scheduler.log'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { level: number; msg: string; req?: { url?: string } });
    expect(lines.some((l) => l.level === 30 && l.req?.url === '/healthz')).toBe(true);
    expect(lines.some((l) => /listening/i.test(l.msg))).toBe(true);
    const text = fs.readFileSync(path.join(dir, 'scheduler.log'), 'utf8');
    expect(text).not.toContain(files.clientToken);
  });

  it('refuses a log_file it cannot write, in one line', () => {
    const bad = path.join(dir, 'bad-log.toml');
    fs.writeFileSync(
      bad,
      fs
        .readFileSync(schedulerConfig, 'utf8')
        .replace('log_file = "scheduler.log"', 'log_file = "/sys/kiln/scheduler.log"'),
    );
    const r = spawnSync(process.execPath, [KILN_DIST, 'scheduler', '--config', bad], {
      encoding: 'utf8',
      timeout: 20_000,
    });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(
      /^kiln-dist: invalid value for "log_file" in .*bad-log\.toml: expected a file this user can append to, in a directory that exists: cannot open \/sys\/kiln\/scheduler\.log \(ENOENT\); create the directory/m,
    );
    expect(r.stderr).not.toMatch(/^\s+at /m);
  });

  it('refuses a port in use in one line that names it, with no stack trace', () => {
    const r = spawnSync(process.execPath, [KILN_DIST, 'scheduler', '--config', schedulerConfig], {
      encoding: 'utf8',
      timeout: 20_000,
    });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(
      new RegExp(
        `kiln-dist: the scheduler cannot listen on 127\\.0\\.0\\.1:${schedulerPort}: address in use: another program \\(or another kiln-dist\\) is using that port; stop it, or set public_addr to a free port\\n$`,
      ),
    );
    expect(r.stderr).not.toMatch(/^\s+at /m);
  });

  it('says which cache_dir it cannot write and what to set, with no stack trace', () => {
    const config = writeWorkerConfig(files, 'w3', scheduler.url);
    // Not writable even by root.
    fs.writeFileSync(
      config,
      fs.readFileSync(config, 'utf8').replace(/^cache_dir = .*$/m, 'cache_dir = "/sys/kiln-worker-cache"'),
    );
    const r = spawnSync(process.execPath, [KILN_DIST, 'worker', '--config', config], {
      encoding: 'utf8',
      timeout: 20_000,
    });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(
      /^kiln-dist: invalid value for "cache_dir" in worker\.toml: expected a directory this worker can write: it cannot create \/sys\/kiln-worker-cache\/plugins \((EPERM|EACCES|EROFS)\).*Set cache_dir to a directory of its own, such as ~\/\.cache\/kiln-worker.*\[sandbox_config\] work_dir/,
    );
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
  });

  it('a worker whose scheduler is not there says so in words, and what to check', async () => {
    const port = await freePort();
    const w = await start([
      'worker',
      '--config',
      writeWorkerConfig(files, 'w4', `https://127.0.0.1:${port}`),
    ]);
    expect(w.output()).toContain(
      `kiln-dist: heartbeat to https://127.0.0.1:${port} failed: connection refused: is the scheduler running, and is scheduler_url right?; retrying every second (every 5 s after a minute)\n`,
    );
    await w.stop();
  });

  for (const signal of ['SIGKILL', 'SIGTERM'] as const) {
    it(`has its workers back within 3 s of a scheduler restart (${signal}), with 7.5 s heartbeats`, async () => {
      await scheduler.stop(signal);
      scheduler = await start(['scheduler', '--config', schedulerConfig]);
      const up = Date.now();
      await waitFor('the worker to re-register', async () => (await workersNow()) === 1, 10_000);
      const took = Date.now() - up;
      expect(took).toBeLessThan(3000);
    });
  }

  // Last: the scheduler keeps a stopped worker until worker_timeout.
  it('a worker on every interface prints that, and the public_url it advertises', async () => {
    const port = await freePort();
    const config = writeWorkerConfig(files, 'w2', scheduler.url);
    fs.writeFileSync(
      config,
      fs
        .readFileSync(config, 'utf8')
        .replace(
          'public_addr = "127.0.0.1:0"',
          `public_addr = "0.0.0.0:${port}"\npublic_url = "https://localhost:${port}"`,
        ),
    );
    const w2 = await start(['worker', '--config', config]);
    expect(w2.output()).toContain(
      `kiln-dist: worker w2 listening on https://0.0.0.0:${port} (advertised to the scheduler as https://localhost:${port})\n`,
    );
    await w2.stop();
  });
});
