/**
 * The worker's HTTP API and toolchain store against a hostile client: every refusal, and after
 * each one, that the worker still serves. A real worker app on 127.0.0.1 with the real bubblewrap
 * sandbox, the real toolchain store and archive resolver, and a static test tool as the toolchain.
 */
import { createHash, createSecretKey } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { ToolchainResolver } from '@kiln/plugins';
import { hostTriple, versionDigest } from '@kiln/plugins';
import { RustupResolver } from '@kiln/resolver-rustup';
import { BwrapSandbox } from '@kiln/sandbox-bwrap';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { have } from '../../test/helpers/prereq.js';
import { parsePrometheus } from '../../test/helpers/prometheus.js';
import { buildToolArchive } from '../../test/helpers/static-tool.js';
import { jobToken } from '../src/cluster/auth.js';
import { signHs256 } from '../src/cluster/hs256-jwt.js';
import { decodeFrame, encodeFrame, JOB_CONTENT_TYPE, type JobResultHeader } from '../src/cluster/wire.js';
import { ToolchainStore } from '../src/cluster/worker/toolchain-store.js';
import { createWorkerApp, type WorkerApp } from '../src/cluster/worker/worker-app.js';
import { ArchiveResolver } from '../src/toolchain/archive-resolver.js';

const W = 'w-test';
const MAX_TOOLCHAIN = 4 * 1024 * 1024;
const MAX_JOB_INPUT = 256 * 1024;
const REQUEST_TIMEOUT_MS = 1500;
const METRICS_TOKEN = 'metrics-token-for-tests';

let tmp: string;
let archive: Buffer;
let digest: string;
let worker: WorkerApp;
let url: string;
let storeTmp: string;
let done: [string, boolean][] = [];
let seq = 0;

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const jobKey = () => createSecretKey(Buffer.from(worker.jobKey, 'base64url'));
const newJob = () => `job-${++seq}`;

function token(
  jobId: string,
  o: { scope?: 'job' | 'probe'; toolchain?: string; lifetimeS?: number; worker?: string } = {},
) {
  return jobToken(
    jobKey(),
    o.worker ?? W,
    { jobId, scope: o.scope ?? 'job', toolchain: o.toolchain ?? digest },
    o.lifetimeS ?? 60,
  );
}

interface Reply {
  status: number;
  body: Buffer;
  json: { code?: string; message?: string } | undefined;
  connection: string | undefined;
}

/** One request on its own connection (no keep-alive: each refusal is seen on a fresh socket). */
function send(
  method: string,
  p: string,
  o: { token?: string; type?: string; body?: Buffer; headers?: Record<string, string> } = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request(`${url}/api/v1${p}`, {
      method,
      agent: false,
      headers: {
        ...(o.token ? { authorization: `Bearer ${o.token}` } : {}),
        ...(o.type ? { 'content-type': o.type } : {}),
        ...o.headers,
      },
    });
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const body = Buffer.concat(chunks);
        let json: Reply['json'];
        try {
          json = JSON.parse(body.toString());
        } catch {}
        resolve({ status: res.statusCode ?? 0, body, json, connection: res.headers.connection });
      });
    });
    // A server that answers before reading the whole body may reset the upload: the answer counts.
    req.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EPIPE' && err.code !== 'ECONNRESET') reject(err);
    });
    req.end(o.body);
  });
}

const upload = (t: string, body = archive, d = digest, type = 'application/octet-stream') =>
  send('PUT', `/toolchains/${d}?kind=archive`, { token: t, type, body });

function jobFrame(over: Record<string, unknown> = {}, blobs: Buffer[] = [Buffer.from('hello\n')]) {
  return encodeFrame(
    {
      toolchain: { kind: 'archive', digest, compiler: '/usr/bin/tool' },
      cwd: '/work/p',
      argv: ['/usr/bin/tool', 'cp', 'in.txt', 'out.txt'],
      env: { PATH: '/usr/bin' },
      inputs: ['in.txt'],
      outputs: ['out.txt'],
      timeoutMs: 20_000,
      ...over,
    },
    blobs,
  );
}

const run = (jobId: string, t: string, body = jobFrame(), type = JOB_CONTENT_TYPE) =>
  send('POST', `/jobs/${jobId}/run`, { token: t, type, body });

/** Files in the store's temp dir, and this process's descriptors open on anything in it. */
function storeLeftovers(): { files: string[]; fds: string[] } {
  const fds: string[] = [];
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    try {
      const target = fs.readlinkSync(`/proc/self/fd/${fd}`);
      if (target.startsWith(storeTmp)) fds.push(target);
    } catch {}
  }
  return { files: fs.readdirSync(storeTmp), fds };
}

async function noLeftovers(): Promise<void> {
  // Closing a stream is asynchronous: give it a moment, then insist.
  for (let i = 0; i < 50; i++) {
    const l = storeLeftovers();
    if (l.files.length === 0 && l.fds.length === 0) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  expect(storeLeftovers()).toEqual({ files: [], fds: [] });
}

/** The worker still answers and still runs a whole job (upload included when needed). */
async function expectServes(): Promise<void> {
  expect((await send('GET', '/health')).status).toBe(200);
  const jobId = newJob();
  const t = await token(jobId);
  const r = await run(jobId, t);
  expect(r.status, r.body.toString()).toBe(200);
  const { header, blobs } = decodeFrame<JobResultHeader>(r.body);
  expect(header.exitCode).toBe(0);
  expect(blobs[2]!.toString()).toBe('hello\n');
  expect(worker.heldJobs()).toEqual([]);
}

describe.skipIf(!have('bwrap'))('worker HTTP API against a hostile client', () => {
  beforeAll(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-worker-api-'));
    fs.chmodSync(tmp, 0o755);
    ({ archive, digest } = buildToolArchive(tmp));
    const storeDir = path.join(tmp, 'store');
    storeTmp = path.join(storeDir, 'tmp');
    const store = new ToolchainStore(
      storeDir,
      64 * 1024 * 1024,
      MAX_TOOLCHAIN,
      new Map<string, ToolchainResolver>([
        ['archive', new ArchiveResolver()],
        // The real rustup resolver over an empty rustup home: it refuses every toolchain.
        [
          'rustup',
          new RustupResolver({
            config: {
              rustup: 'rustup',
              rustup_home: path.join(tmp, 'empty-rustup-home'),
              install: false,
              install_timeout: 60,
              hosts: [],
            },
            hostTriple: hostTriple(),
          }),
        ],
      ]),
    );
    fs.mkdirSync(path.join(tmp, 'empty-rustup-home'));
    worker = createWorkerApp({
      id: W,
      hostTriple: 'x86_64-unknown-linux-gnu',
      version: 'test',
      sandbox: new BwrapSandbox({
        bwrap_path: 'bwrap',
        work_dir: path.join(tmp, 'work'),
        max_output_bytes: 1024 * 1024,
        max_log_bytes: 64 * 1024,
        job_uid: 65534,
        job_gid: 65534,
        slot_uid_base: 2_000_000_000,
        extra_args: [],
      }),
      store,
      maxJobs: 2,
      jobTimeoutMs: 30_000,
      maxToolchainBytes: MAX_TOOLCHAIN,
      maxJobInputBytes: MAX_JOB_INPUT,
      requestTimeoutMs: REQUEST_TIMEOUT_MS,
      onJobDone: (jobId, failed) => void done.push([jobId, failed]),
      metricsToken: () => METRICS_TOKEN,
    });
    url = await worker.app.listen({ host: '127.0.0.1', port: 0 });
    // The toolchain, uploaded once with a job token of its own.
    const jobId = newJob();
    expect((await upload(await token(jobId))).status).toBe(201);
  });
  afterAll(async () => {
    await worker?.app.close();
    fs.rmSync(tmp, { recursive: true, force: true });
  });
  beforeEach(() => {
    done = [];
  });

  // First in the file: the toolchain uploaded in beforeAll is the only upload so far.
  it('counts uploads, jobs by outcome, input bytes and job time in /metrics, for the metrics token only', async () => {
    const scrape = async () => {
      const r = await send('GET', '/../../metrics', { token: METRICS_TOKEN });
      expect(r.status, r.body.toString()).toBe(200);
      return parsePrometheus(r.body.toString());
    };
    expect((await send('GET', '/../../metrics')).status).toBe(401);
    expect((await send('GET', '/../../metrics', { token: 'wrong' })).status).toBe(401);
    const health = await send('GET', '/../../healthz');
    expect(health.status).toBe(200);
    expect(health.json).toEqual({ status: 'ok', id: W, version: 'test' });
    const before = await scrape();
    expect(before.types.get('kiln_worker_jobs_total')).toBe('counter');
    expect(before.types.get('kiln_worker_job_duration_seconds')).toBe('histogram');
    expect(before.value('kiln_worker_toolchain_uploads_total')).toBe(1);
    expect(before.value('kiln_worker_toolchain_upload_bytes_total')).toBe(archive.length);
    expect(before.value('kiln_worker_slots')).toBe(2);
    expect(
      before.value('kiln_worker_info', { worker: W, pool: 'x86_64-unknown-linux-gnu', version: 'test' }),
    ).toBe(1);
    let inputBytes = 0;
    for (const argv of [
      ['/usr/bin/tool', 'cp', 'in.txt', 'out.txt'],
      ['/usr/bin/tool', 'cp', 'in.txt', 'out.txt'],
      ['/usr/bin/tool', 'cp', 'missing.txt', 'out.txt'],
    ]) {
      const jobId = newJob();
      const body = jobFrame({ argv });
      inputBytes += body.length;
      expect((await run(jobId, await token(jobId), body)).status).toBe(200);
    }
    const after = await scrape();
    expect(after.value('kiln_worker_jobs_total', { outcome: 'ok' })).toBe(2);
    expect(after.value('kiln_worker_jobs_total', { outcome: 'compile_error' })).toBe(1);
    expect(after.value('kiln_worker_sandbox_failures_total')).toBeUndefined();
    expect(after.value('kiln_worker_job_duration_seconds_count')).toBe(3);
    expect(after.value('kiln_worker_job_duration_seconds_bucket', { le: '+Inf' })).toBe(3);
    expect(after.value('kiln_worker_job_input_bytes_total')).toBe(inputBytes);
    expect(after.value('kiln_worker_running_jobs')).toBe(0);
  });

  it('refuses a missing, malformed, foreign, expired or unscoped token with 401 before reading the body', async () => {
    const jobId = newJob();
    const unscoped = signHs256(jobKey(), {
      iss: 'kiln-scheduler',
      sub: jobId,
      aud: `kiln-worker:${W}`,
      exp: Math.floor(Date.now() / 1000) + 60,
    });
    const bad: [string, string | undefined][] = [
      ['missing', undefined],
      ['malformed', 'not.a.token'],
      ['forged', `${(await token(jobId)).slice(0, -4)}AAAA`],
      ['another worker', await token(jobId, { worker: 'w-other' })],
      ['expired', await token(jobId, { lifetimeS: -5 })],
      ['unscoped (old style, ran anything)', unscoped],
    ];
    for (const [why, t] of bad) {
      const replies = [
        await send('POST', `/jobs/${jobId}/ping`, t ? { token: t } : {}),
        await send('HEAD', `/toolchains/${digest}`, t ? { token: t } : {}),
        await upload(t ?? '', archive),
        await run(jobId, t ?? ''),
      ];
      for (const r of replies) expect(r.status, why).toBe(401);
      // The bodies were not read: the worker closed those connections rather than swallow them.
      expect(replies[2]!.connection, why).toBe('close');
      expect(replies[3]!.connection, why).toBe('close');
    }
    expect(done).toEqual([]);
    await noLeftovers();
    await expectServes();
  });

  it('a probe token pings and does nothing else', async () => {
    const jobId = newJob();
    const t = await token(jobId, { scope: 'probe' });
    expect((await send('POST', `/jobs/${jobId}/ping`, { token: t })).status).toBe(200);
    expect((await send('HEAD', `/toolchains/${digest}`, { token: t })).status).toBe(403);
    expect((await upload(t)).status).toBe(403);
    const r = await run(jobId, t);
    expect(r.status).toBe(403);
    expect(r.json?.message).toMatch(/probe token/);
    expect(done).toEqual([]);
    expect(worker.heldJobs()).toEqual([]);
    await expectServes();
  });

  it('one token runs one job, one request at a time: a replay is refused', async () => {
    const jobId = newJob();
    const t = await token(jobId);
    // Until the job runs, its toolchain may be sent again (the worker may have evicted it).
    expect((await upload(t)).status).toBe(201);
    expect((await upload(t)).status).toBe(201);
    // But not two bodies at once with one token: every concurrent run but one is refused.
    const body = jobFrame({ argv: ['/usr/bin/tool', 'sleep', '1'], outputs: ['none'] });
    const runs = await Promise.all(Array.from({ length: 5 }, () => run(jobId, t, body)));
    expect(runs.map((r) => r.status).sort()).toEqual([200, 403, 403, 403, 403]);
    const again = await run(jobId, t);
    expect(again.status).toBe(403);
    expect(again.json?.message).toMatch(/used already/);
    // Nor can the spent token upload or look up anything now.
    expect((await upload(t)).status).toBe(403);
    expect((await send('HEAD', `/toolchains/${digest}`, { token: t })).status).toBe(403);
    expect(done).toEqual([[jobId, false]]);
    await expectServes();
  });

  it('a client that goes away during the compile leaves nothing held: slot, job space, outputs', async () => {
    const jobId = newJob();
    const t = await token(jobId);
    const work = path.join(tmp, 'work');
    const jobDirs = () => fs.readdirSync(work).filter((e) => e.startsWith(jobId));
    let seen: { dirs: number; held: string[] } | undefined;
    await new Promise<void>((resolve) => {
      const req = http.request(`${url}/api/v1/jobs/${jobId}/run`, {
        method: 'POST',
        agent: false,
        headers: { authorization: `Bearer ${t}`, 'content-type': JOB_CONTENT_TYPE },
      });
      req.on('error', () => {});
      req.end(jobFrame({ argv: ['/usr/bin/tool', 'sleep', '2'], outputs: ['none'] }));
      // Once the job runs (its space exists), the client goes away.
      const started = Date.now();
      const wait = setInterval(() => {
        if (jobDirs().length === 0 && Date.now() - started < 10_000) return;
        clearInterval(wait);
        seen = { dirs: jobDirs().length, held: worker.heldJobs() };
        req.destroy();
        resolve();
      }, 20);
    });
    expect(seen).toEqual({ dirs: 1, held: [jobId] });
    // Held until the sandbox is done with it, then all of it goes.
    for (let i = 0; i < 500 && done.length === 0; i++) await new Promise((r) => setTimeout(r, 30));
    expect(done).toEqual([[jobId, false]]);
    expect(worker.heldJobs()).toEqual([]);
    // The job space goes as soon as its release (an unmount and a removal) completes.
    for (let i = 0; i < 250 && jobDirs().length > 0; i++) await new Promise((r) => setTimeout(r, 20));
    expect(jobDirs()).toEqual([]);
    await expectServes();
  });

  it('many jobs on one kept-alive connection: no listener piles up on the socket', async () => {
    const warnings: string[] = [];
    const onWarning = (w: Error) => void warnings.push(w.name);
    process.on('warning', onWarning);
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      for (let i = 0; i < 15; i++) {
        const jobId = newJob();
        const t = await token(jobId);
        const status = await new Promise<number>((resolve, reject) => {
          const req = http.request(`${url}/api/v1/jobs/${jobId}/run`, {
            method: 'POST',
            agent,
            headers: { authorization: `Bearer ${t}`, 'content-type': JOB_CONTENT_TYPE },
          });
          req.on('response', (res) => {
            res.resume();
            res.on('end', () => resolve(res.statusCode ?? 0));
          });
          req.on('error', reject);
          req.end(jobFrame());
        });
        expect(status).toBe(200);
      }
    } finally {
      agent.destroy();
      process.off('warning', onWarning);
    }
    expect(warnings).toEqual([]);
  });

  it("job A's token on job B's URL is refused and does not touch job A", async () => {
    const a = newJob();
    const b = newJob();
    const ta = await token(a);
    const r = await run(b, ta);
    expect(r.status).toBe(403);
    expect(r.json?.message).toMatch(/another job/);
    expect((await send('POST', `/jobs/${b}/ping`, { token: ta })).status).toBe(403);
    expect(done).toEqual([]);
    // A's token still runs A.
    expect((await run(a, ta)).status).toBe(200);
    expect(done).toEqual([[a, false]]);
  });

  it('a token allocated for one toolchain neither uploads nor runs another', async () => {
    const jobId = newJob();
    const other = 'e'.repeat(64);
    const t = await token(jobId);
    expect((await upload(t, Buffer.from('x'), other)).status).toBe(403);
    const r = await run(
      jobId,
      t,
      jobFrame({ toolchain: { kind: 'archive', digest: other, compiler: '/usr/bin/tool' } }),
    );
    expect(r.status).toBe(403);
    expect(done).toEqual([]);
    await noLeftovers();
    await expectServes();
  });

  it('a job whose toolchain is missing gets 409 without spending its token', async () => {
    const missing = 'f'.repeat(64);
    const jobId = newJob();
    const t = await token(jobId, { toolchain: missing });
    const r = await run(
      jobId,
      t,
      jobFrame({ toolchain: { kind: 'archive', digest: missing, compiler: '/usr/bin/tool' } }),
    );
    expect(r.status).toBe(409);
    expect(done).toEqual([]);
    // The token may still upload (a wrong archive for that digest is refused: 400) and run later.
    const up = await upload(t, archive, missing);
    expect(up.status).toBe(400);
    expect(up.json?.code).toBe('KILN_ERR_DIST_TOOLCHAIN_DIGEST');
    await noLeftovers();
    await expectServes();
  });

  it.skipIf(!have('rustup'))(
    'a toolchain named by version: 400 for a digest that is not its version, 422 when the resolver refuses (token spent, slot freed)',
    async () => {
      const version = {
        release: '1.95.0',
        commit: 'e'.repeat(40),
        commit_date: '2026-04-14',
        target: 'x86_64-unknown-linux-gnu',
      };
      const frame = (d: string) =>
        jobFrame({
          toolchain: {
            kind: 'rustup',
            digest: d,
            compiler: '/rust/bin/rustc',
            version,
            targetTriple: version.target,
          },
        });
      // A client claiming another toolchain's digest for this version.
      const forged = 'a'.repeat(64);
      let jobId = newJob();
      let r = await run(jobId, await token(jobId, { toolchain: forged }), frame(forged));
      expect(r.status).toBe(400);
      expect(r.json?.code).toBe('KILN_ERR_DIST_TOOLCHAIN_DIGEST');
      // That job is over too: its slot is freed at once rather than held until it expires.
      expect(done).toEqual([[jobId, true]]);
      done = [];
      // The right digest: rustup has no such toolchain and may not install one.
      const d = versionDigest('rustup', version);
      jobId = newJob();
      const t = await token(jobId, { toolchain: d });
      r = await run(jobId, t, frame(d));
      expect(r.status).toBe(422);
      expect(r.json?.code).toBe('KILN_ERR_DIST_TOOLCHAIN_UNAVAILABLE');
      expect(r.json?.message).toContain('set install = true');
      expect(done).toEqual([[jobId, true]]);
      // The job is over: its token does not run again.
      expect((await run(jobId, t, frame(d))).status).toBe(403);
      await noLeftovers();
      await expectServes();
    },
  );

  it('refuses oversize bodies with 413 and leaves no temp file or open descriptor', async () => {
    // Declared too big: refused before a byte is read.
    const declared = await send('PUT', `/toolchains/${digest}?kind=archive`, {
      token: await token(newJob()),
      type: 'application/octet-stream',
      headers: { 'content-length': String(MAX_TOOLCHAIN + 1) },
    });
    expect(declared.status).toBe(413);
    expect(declared.connection).toBe('close');
    // Chunked, no length: refused when the limit is passed while streaming to disk.
    const big = Buffer.alloc(MAX_TOOLCHAIN + 64 * 1024, 1);
    const streamed = await new Promise<number>((resolve, reject) => {
      token(newJob()).then((t) => {
        const req = http.request(`${url}/api/v1/toolchains/${sha256(big)}?kind=archive`, {
          method: 'PUT',
          agent: false,
          headers: { authorization: `Bearer ${t}`, 'content-type': 'application/octet-stream' },
        });
        req.on('response', (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        });
        req.on('error', reject);
        for (let i = 0; i < big.length; i += 64 * 1024) req.write(big.subarray(i, i + 64 * 1024));
        req.end();
      }, reject);
    });
    // 403: a token allocated for this digest is needed; with one, 413.
    expect(streamed).toBe(403);
    const d = sha256(big);
    const jobId = newJob();
    const tBig = await token(jobId, { toolchain: d });
    const r = await send('PUT', `/toolchains/${d}?kind=archive`, {
      token: tBig,
      type: 'application/octet-stream',
      body: big,
      headers: { 'transfer-encoding': 'chunked' },
    });
    expect(r.status).toBe(413);
    expect(r.json?.code).toBe('KILN_ERR_DIST_TOO_LARGE');
    // A job body over max_job_input_size.
    const j = newJob();
    const tooBig = await run(j, await token(j), jobFrame({}, [Buffer.alloc(MAX_JOB_INPUT + 1)]));
    expect(tooBig.status).toBe(413);
    expect(done).toEqual([]);
    await noLeftovers();
    await expectServes();
  });

  it('refuses the wrong content type with 415, before reading the body', async () => {
    const jobId = newJob();
    const t = await token(jobId);
    const json = await upload(t, Buffer.from('{"a":1}'), digest, 'application/json');
    expect(json.status).toBe(415);
    expect(json.json?.code).toBe('KILN_ERR_DIST_UNSUPPORTED_TYPE');
    expect((await run(jobId, t, jobFrame(), 'application/octet-stream')).status).toBe(415);
    expect((await run(jobId, t, jobFrame(), 'text/plain')).status).toBe(415);
    await noLeftovers();
    // Refusals spent nothing: the token still runs its job.
    expect((await run(jobId, t)).status).toBe(200);
  });

  it('answers malformed frames, schema errors and bad parameters with 400', async () => {
    const jobId = newJob();
    const t = await token(jobId);
    const cases: [string, Buffer][] = [
      ['not a frame', Buffer.from('hello world')],
      ['truncated', jobFrame().subarray(0, 40)],
      ['trailing bytes', Buffer.concat([jobFrame(), Buffer.from('x')])],
      ['unknown field', jobFrame({ extra: 1 })],
      ['relative cwd', jobFrame({ cwd: 'work' })],
      ['blob count', jobFrame({}, [])],
    ];
    for (const [why, body] of cases) {
      const r = await run(jobId, t, body);
      expect(r.status, why).toBe(400);
      expect(r.json?.code, why).toMatch(/^KILN_ERR_/);
    }
    expect((await send('POST', '/jobs/bad id!/ping', { token: await token('bad id!') })).status).toBe(400);
    expect(
      (
        await send('PUT', `/toolchains/${digest}?kind=../x`, {
          token: t,
          type: 'application/octet-stream',
          body: archive,
        })
      ).status,
    ).toBe(400);
    const notDigest = await token(newJob(), { toolchain: 'not-a-digest' });
    expect((await send('HEAD', '/toolchains/not-a-digest', { token: notDigest })).status).toBe(400);
    expect(done).toEqual([]);
    expect((await run(jobId, t)).status).toBe(200);
  });

  it('closes a slow body: at once without a token, at request_timeout with one', async () => {
    const slow = (auth: string | undefined, d: string) =>
      new Promise<{ ms: number; answer: string }>((resolve) => {
        const started = Date.now();
        const sock = net.connect(Number(new URL(url).port), '127.0.0.1');
        let answer = '';
        sock.on('data', (c) => {
          answer += c;
        });
        sock.on('error', () => {});
        sock.on('close', () => {
          clearInterval(drip);
          resolve({ ms: Date.now() - started, answer });
        });
        sock.write(
          `PUT /api/v1/toolchains/${d}?kind=archive HTTP/1.1\r\nhost: x\r\ncontent-type: application/octet-stream\r\ncontent-length: 100000\r\n${auth ? `authorization: Bearer ${auth}\r\n` : ''}\r\n`,
        );
        const drip = setInterval(() => sock.write('x'), 200);
      });
    const anon = await slow(undefined, digest);
    expect(anon.answer).toMatch(/^HTTP\/1.1 401/);
    expect(anon.ms).toBeLessThan(1000);
    const d = 'b'.repeat(64);
    const jobId = newJob();
    const t = await token(jobId, { toolchain: d });
    const during = new Promise<string[]>((r) => setTimeout(() => r(worker.heldJobs()), 600));
    const authed = await slow(t, d);
    // Held while the upload was in flight; the connection cut at the deadline (Node answers 408).
    expect(await during).toEqual([jobId]);
    expect(authed.ms).toBeGreaterThanOrEqual(REQUEST_TIMEOUT_MS - 100);
    expect(authed.ms).toBeLessThan(REQUEST_TIMEOUT_MS + 2500);
    await noLeftovers();
    expect(worker.heldJobs()).toEqual([]);
    await expectServes();
  });

  it('an aborted upload leaves no temp file and no open descriptor', async () => {
    const d = 'a'.repeat(64);
    const jobId = newJob();
    const t = await token(jobId, { toolchain: d });
    await new Promise<void>((resolve) => {
      const req = http.request(`${url}/api/v1/toolchains/${d}?kind=archive`, {
        method: 'PUT',
        agent: false,
        headers: {
          authorization: `Bearer ${t}`,
          'content-type': 'application/octet-stream',
          'content-length': '1000000',
        },
      });
      req.on('error', () => resolve());
      req.write(Buffer.alloc(200_000, 7));
      // Once the worker has started writing the temp file, the client goes away.
      const wait = setInterval(() => {
        if (storeLeftovers().files.length > 0) {
          clearInterval(wait);
          req.destroy();
          resolve();
        }
      }, 10);
    });
    await noLeftovers();
    expect(worker.heldJobs()).toEqual([]);
    await expectServes();
  });

  it("an upload that joined another's is received itself when the first client goes away", async () => {
    // A second toolchain: the same tool with one more file, so another digest.
    const dir = fs.mkdtempSync(path.join(tmp, 'tc2-'));
    const other = buildToolArchive(dir, 'second');
    const d = other.digest;
    const first = await token(newJob(), { toolchain: d });
    const second = await token(newJob(), { toolchain: d });
    const aborted = new Promise<void>((resolve) => {
      const req = http.request(`${url}/api/v1/toolchains/${d}?kind=archive`, {
        method: 'PUT',
        agent: false,
        headers: {
          authorization: `Bearer ${first}`,
          'content-type': 'application/octet-stream',
          'content-length': String(other.archive.length),
        },
      });
      req.on('error', () => resolve());
      req.write(other.archive.subarray(0, 1000));
      setTimeout(() => {
        req.destroy();
        resolve();
      }, 300);
    });
    await new Promise((r) => setTimeout(r, 100));
    const joined = upload(second, other.archive, d);
    await aborted;
    const r = await joined;
    expect(r.status, r.body.toString()).toBe(201);
    await noLeftovers();
  });

  it('a ping or a lookup holds no slot: only uploads and runs in flight are reported', async () => {
    const jobId = newJob();
    const t = await token(jobId);
    expect((await send('POST', `/jobs/${jobId}/ping`, { token: t })).status).toBe(200);
    expect((await send('HEAD', `/toolchains/${digest}`, { token: t })).status).toBe(200);
    expect(worker.heldJobs()).toEqual([]);
    const running = run(jobId, t, jobFrame({ argv: ['/usr/bin/tool', 'sleep', '1'], outputs: ['none'] }));
    await new Promise((r) => setTimeout(r, 400));
    expect(worker.heldJobs()).toEqual([jobId]);
    expect((await running).status).toBe(200);
    expect(worker.heldJobs()).toEqual([]);
  });
});
