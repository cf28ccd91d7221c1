/**
 * The attacks of the security review, run for real against `kiln-dist scheduler` and
 * `kiln-dist worker` processes on 127.0.0.1: an untrusted network client without a token, a
 * client replaying or borrowing job tokens, a probe-token minter and a worker-token holder.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AllocateResponse } from '../../core/src/cluster/api.js';
import {
  type ClusterFiles,
  clusterCertificates,
  clusterFetch,
  clusterFiles,
  clusterStatus,
  kilnDist,
  type ServerProcess,
  startServer,
  waitForWorkers,
  writeSchedulerConfig,
  writeWorkerConfig,
} from '../helpers/cluster.js';
import { removeTree } from '../helpers/kiln.js';
import { have } from '../helpers/prereq.js';
import { buildToolArchive, type ToolArchive } from '../helpers/static-tool.js';

const X86 = 'x86_64-unknown-linux-gnu';
let tmp: string;
let files: ClusterFiles;
let scheduler: ServerProcess;
let worker: ServerProcess;
let workerUrl: string;
let tool: ToolArchive;

function rssKiB(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(new RegExp(`^${field}:\\s+(\\d+)`, 'm').exec(status)?.[1]);
}

async function call(
  base: string,
  p: string,
  init: { method?: string; token?: string; json?: unknown; body?: Buffer; type?: string } = {},
) {
  const headers: Record<string, string> = {};
  if (init.token) headers.authorization = `Bearer ${init.token}`;
  let body: Buffer | string | undefined = init.body;
  if (init.json !== undefined) {
    body = JSON.stringify(init.json);
    headers['content-type'] = 'application/json';
  }
  if (init.type) headers['content-type'] = init.type;
  const res = await clusterFetch(files)(`${base}/api/v1${p}`, {
    method: init.method ?? (body ? 'POST' : 'GET'),
    headers,
    body,
  });
  const text = res.text;
  let json: Record<string, unknown> | undefined;
  try {
    json = JSON.parse(text);
  } catch {}
  return { status: res.status, json, text };
}

const allocate = async () => {
  const r = await call(scheduler.url, '/jobs', {
    token: files.clientToken,
    json: { toolchain: { kind: 'archive', digest: tool.digest, hostTriples: [X86] } },
  });
  expect(r.status).toBe(200);
  return r.json as AllocateResponse;
};

/** A real job frame: `tool cp in.txt out.txt` in /work/p. */
async function jobBody(): Promise<Buffer> {
  const { encodeFrame } = await import('../../core/src/cluster/wire.js');
  return encodeFrame(
    {
      toolchain: { kind: 'archive', digest: tool.digest, compiler: '/usr/bin/tool' },
      cwd: '/work/p',
      argv: ['/usr/bin/tool', 'cp', 'in.txt', 'out.txt'],
      env: { PATH: '/usr/bin' },
      inputs: ['in.txt'],
      outputs: ['out.txt'],
      timeoutMs: 20_000,
    },
    [Buffer.from('hi\n')],
  );
}

const JOB_TYPE = 'application/x-kiln-job';

describe.skipIf(!have('bwrap'))('attacks on the cluster', () => {
  beforeAll(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-sec-'));
    fs.chmodSync(tmp, 0o755);
    tool = buildToolArchive(tmp);
    files = clusterFiles(path.join(tmp, 'cluster'));
    scheduler = await startServer([
      'scheduler',
      '--config',
      writeSchedulerConfig(files, 0, 'log_level = "info"'),
    ]);
    worker = await startServer([
      'worker',
      '--config',
      writeWorkerConfig(files, 'w1', scheduler.url, 'log_level = "info"\nrequest_timeout = 3\nmax_jobs = 8'),
    ]);
    workerUrl = worker.url;
    await waitForWorkers(scheduler.url, files.clientToken, 1, 10_000);
  });
  afterAll(async () => {
    await worker?.stop();
    await scheduler?.stop();
    removeTree(tmp);
  });

  it('a 200 MB POST without a token is refused before its body is read: the worker stays small', async () => {
    const pid = worker.proc.pid!;
    const before = rssKiB(pid, 'VmHWM');
    const big = Buffer.alloc(200 * 1024 * 1024, 1);
    const started = Date.now();
    const r = await call(workerUrl, '/jobs/x/run', { body: big, type: JOB_TYPE }).catch((err: Error) => ({
      status: 0,
      text: err.message,
    }));
    // Either the 401 arrives, or the socket is cut while the body is still going out.
    expect([0, 401]).toContain(r.status);
    expect(Date.now() - started).toBeLessThan(10_000);
    // Peak RSS, not current: the old worker buffered the body (70 → 457 MB).
    expect(rssKiB(pid, 'VmHWM') - before).toBeLessThan(40 * 1024);
    expect((await call(workerUrl, '/health')).status).toBe(200);
  });

  it('unauthenticated slow bodies are cut at once, and slow headers at their deadline (over TLS)', async () => {
    // An attacker does not check certificates; the worker speaks TLS like every real one.
    const connect = (port: number) => tls.connect({ port, host: '127.0.0.1', rejectUnauthorized: false });
    const port = Number(new URL(workerUrl).port);
    const started = Date.now();
    const closed = await Promise.all(
      Array.from(
        { length: 10 },
        () =>
          new Promise<number>((resolve) => {
            const sock = connect(port);
            sock.on('error', () => {});
            sock.on('close', () => {
              clearInterval(drip);
              resolve(Date.now() - started);
            });
            sock.write(
              `POST /api/v1/jobs/x/run HTTP/1.1\r\nhost: x\r\ncontent-type: ${JOB_TYPE}\r\ncontent-length: 1000000\r\n\r\n`,
            );
            const drip = setInterval(() => sock.write('x'), 500);
          }),
      ),
    );
    expect(Math.max(...closed)).toBeLessThan(3000);
    // The scheduler too: a body without credentials is not read.
    const schedulerCut = await new Promise<{ ms: number; answer: string }>((resolve) => {
      const t0 = Date.now();
      let answer = '';
      const sock = connect(Number(new URL(scheduler.url).port));
      sock.on('data', (c) => {
        answer += c;
      });
      sock.on('error', () => {});
      sock.on('close', () => {
        clearInterval(drip);
        resolve({ ms: Date.now() - t0, answer });
      });
      sock.write(
        'POST /api/v1/jobs HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 500000\r\n\r\n',
      );
      const drip = setInterval(() => sock.write('{'), 500);
    });
    expect(schedulerCut.answer).toMatch(/^HTTP\/1.1 401/);
    expect(schedulerCut.ms).toBeLessThan(3000);
    // A slow client with no body at all (headers a byte at a time) is cut by the header deadline.
    const slowHeaders = await new Promise<number>((resolve) => {
      const t0 = Date.now();
      const sock = connect(port);
      sock.on('error', () => {});
      sock.on('close', () => {
        clearInterval(drip);
        resolve(Date.now() - t0);
      });
      sock.write('GET /api/v1/health HTTP/1.1\r\n');
      const drip = setInterval(() => sock.write('x-a: b\r\n'), 500);
    });
    // The header deadline is the request timeout here (3 s) checked every second (the old TLS
    // server ignored both: 60 s, checked every 30 s).
    expect(slowHeaders).toBeGreaterThanOrEqual(2500);
    expect(slowHeaders).toBeLessThan(6000);
  });

  it('a job token runs one job: replays, other argv and other jobs are refused, and the accounting holds', async () => {
    const a = await allocate();
    if (a.status !== 'assigned') throw new Error(a.reason);
    expect(
      (
        await call(workerUrl, `/toolchains/${tool.digest}?kind=archive`, {
          method: 'PUT',
          token: a.jobToken,
          body: tool.archive,
          type: 'application/octet-stream',
        })
      ).status,
    ).toBe(201);
    const body = await jobBody();
    const first = await call(workerUrl, `/jobs/${a.jobId}/run`, { token: a.jobToken, body, type: JOB_TYPE });
    expect(first.status).toBe(200);
    for (let i = 0; i < 5; i++) {
      const replay = await call(workerUrl, `/jobs/${a.jobId}/run`, {
        token: a.jobToken,
        body,
        type: JOB_TYPE,
      });
      expect(replay.status).toBe(403);
    }
    // Job B's token used on job A's URL: refused, and job A is not marked failed by it.
    const b = await allocate();
    if (b.status !== 'assigned') throw new Error(b.reason);
    expect(
      (await call(workerUrl, `/jobs/${a.jobId}/run`, { token: b.jobToken, body, type: JOB_TYPE })).status,
    ).toBe(403);
    const jobA = await call(scheduler.url, `/jobs/${a.jobId}`, { token: files.clientToken });
    expect(jobA.json?.state).toBe('finished');
    const s = await clusterStatus(scheduler.url, files.clientToken);
    expect(s.totals.allocations).toBe(2);
    // B was never run: it still counts as assigned (until the assignment times out).
    expect(s.totals.runningJobs).toBe(1);
  });

  it('probe tokens only ping, and there are at most 120 a minute', async () => {
    const mint = () =>
      call(scheduler.url, '/workers/w1/probe-token', { method: 'POST', token: files.clientToken });
    const p = await mint();
    expect(p.status).toBe(200);
    const { jobId, jobToken } = p.json as { jobId: string; jobToken: string };
    expect((await call(workerUrl, `/jobs/${jobId}/ping`, { method: 'POST', token: jobToken })).status).toBe(
      200,
    );
    const run = await call(workerUrl, `/jobs/${jobId}/run`, {
      token: jobToken,
      body: await jobBody(),
      type: JOB_TYPE,
    });
    expect(run.status).toBe(403);
    let minted = 1;
    let limited = 0;
    for (let i = 0; i < 130; i++) {
      const r = await mint();
      if (r.status === 200) minted++;
      else if (r.status === 429) limited++;
    }
    expect(minted).toBe(120);
    expect(limited).toBe(11);
  });

  it('a worker-token holder cannot add fake running jobs without bound', async () => {
    const token = kilnDist([
      'auth',
      'generate-jwt-hs256-worker-token',
      '--worker',
      'fake',
      '--secret-key-file',
      files.secretFile,
    ]);
    const beat = (runningJobs: string[]) =>
      call(scheduler.url, '/workers/heartbeat', {
        token,
        json: {
          id: 'fake',
          url: 'https://127.0.0.1:9',
          certSha256: Array(32).fill('AB').join(':'),
          hostTriple: 'riscv64gc-unknown-linux-gnu',
          os: 'Linux',
          cpuModel: 'x',
          cpus: 1,
          memoryBytes: 1,
          maxJobs: 4,
          sandbox: 'bwrap',
          resolvers: ['archive'],
          toolchains: [],
          runningJobs,
          jobKey: 'k'.repeat(43),
          version: '0',
        },
      });
    const many = Array.from({ length: 10_000 }, (_, i) => `fake-${i}`);
    // Accepted, but only max_jobs of them count.
    expect((await beat(many)).status).toBe(200);
    expect(
      (await clusterStatus(scheduler.url, files.clientToken)).pools.find(
        (p) => p.hostTriple === 'riscv64gc-unknown-linux-gnu',
      )!.runningJobs,
    ).toBe(4);
    for (let round = 0; round < 3; round++) {
      expect((await beat(Array.from({ length: 4 }, (_, i) => `r${round}-${i}`))).status).toBe(200);
    }
    const s = await clusterStatus(scheduler.url, files.clientToken);
    const fake = s.pools.find((p) => p.hostTriple === 'riscv64gc-unknown-linux-gnu')!;
    expect(fake.runningJobs).toBe(4);
  });

  it('a 600 MiB sparse output is streamed: the worker never holds it', async () => {
    const a = await allocate();
    if (a.status !== 'assigned') throw new Error(a.reason);
    const { encodeFrame } = await import('../../core/src/cluster/wire.js');
    const size = 600 * 1024 * 1024;
    const body = encodeFrame(
      {
        toolchain: { kind: 'archive', digest: tool.digest, compiler: '/usr/bin/tool' },
        cwd: '/work/p',
        argv: ['/usr/bin/tool', 'sparse', String(size), 'big.o'],
        env: {},
        inputs: [],
        outputs: ['big.o'],
        timeoutMs: 60_000,
      },
      [],
    );
    const pid = worker.proc.pid!;
    const before = rssKiB(pid, 'VmHWM');
    const { Agent, fetch } = await import('undici');
    const dispatcher = new Agent({ connect: { ca: clusterCertificates(files) } });
    let received = 0;
    try {
      const res = await fetch(`${workerUrl}/api/v1/jobs/${a.jobId}/run`, {
        method: 'POST',
        headers: { authorization: `Bearer ${a.jobToken}`, 'content-type': JOB_TYPE },
        body,
        dispatcher,
      });
      expect(res.status).toBe(200);
      // Read as a stream, counted, never kept: the test process must not hold it either.
      for await (const chunk of res.body!) received += (chunk as Uint8Array).length;
    } finally {
      await dispatcher.close();
    }
    expect(received).toBeGreaterThan(size);
    // The old worker read it whole and copied it into the answer: 181 → 1381 MiB.
    expect(rssKiB(pid, 'VmHWM') - before).toBeLessThan(100 * 1024);
    expect((await call(workerUrl, '/health')).status).toBe(200);
  });

  it('caller mistakes are 4xx with info lines: no error line and no stack trace in either log', async () => {
    const hostile: Promise<{ status: number }>[] = [
      call(workerUrl, '/jobs/x/run', { body: Buffer.from('junk'), type: JOB_TYPE }),
      call(workerUrl, `/toolchains/${tool.digest}`, {
        method: 'PUT',
        body: Buffer.from('{}'),
        type: 'application/json',
      }),
      call(workerUrl, '/nope'),
      call(scheduler.url, '/jobs', {
        token: files.clientToken,
        body: Buffer.from('{'),
        type: 'application/json',
      }),
      call(scheduler.url, '/jobs', { token: files.clientToken, json: { toolchain: 1 } }),
      call(scheduler.url, '/jobs', { token: files.clientToken, body: Buffer.from('x'), type: 'text/plain' }),
      call(scheduler.url, '/workers/heartbeat', { token: 'bad', json: {} }),
    ];
    const a = await allocate();
    if (a.status === 'assigned') {
      for (const body of [Buffer.from('KJOB\0\0\0\x05{}'), Buffer.from('junk')]) {
        hostile.push(call(workerUrl, `/jobs/${a.jobId}/run`, { token: a.jobToken, body, type: JOB_TYPE }));
      }
      hostile.push(
        call(workerUrl, `/toolchains/${tool.digest}`, {
          method: 'PUT',
          token: a.jobToken,
          body: Buffer.from('x'),
          type: 'text/plain',
        }),
      );
    }
    for (const r of await Promise.all(hostile)) {
      expect(r.status).toBeGreaterThanOrEqual(400);
      expect(r.status).toBeLessThan(500);
    }
    // An upload whose client goes away halfway (it was a 500 with a stack trace).
    const other = 'd'.repeat(64);
    const b = (
      await call(scheduler.url, '/jobs', {
        token: files.clientToken,
        json: { toolchain: { kind: 'archive', digest: other, hostTriples: [X86] } },
      })
    ).json as AllocateResponse;
    if (b.status !== 'assigned') throw new Error(b.reason);
    await new Promise<void>((resolve) => {
      const sock = tls.connect({
        port: Number(new URL(workerUrl).port),
        host: '127.0.0.1',
        rejectUnauthorized: false,
      });
      sock.on('error', () => {});
      sock.on('secureConnect', () => {
        sock.write(
          `PUT /api/v1/toolchains/${other}?kind=archive HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${b.jobToken}\r\ncontent-type: application/octet-stream\r\ncontent-length: 100000\r\n\r\n`,
        );
        sock.write(Buffer.alloc(5000, 1));
        setTimeout(() => {
          sock.destroy();
          resolve();
        }, 300);
      });
    });
    await new Promise((r) => setTimeout(r, 500));
    for (const [name, server] of [
      ['worker', worker],
      ['scheduler', scheduler],
    ] as const) {
      const lines = server.output().split('\n');
      const errors = lines.filter((l) => /"level":(50|60)/.test(l));
      expect(errors, name).toEqual([]);
      expect(
        lines.filter((l) => /^\s+at /.test(l) || l.includes('"stack"')),
        name,
      ).toEqual([]);
      expect(
        lines.some((l) => /"level":30/.test(l) && /: 4\d\d /.test(l)),
        name,
      ).toBe(true);
    }
  });
});
