import { createSecretKey, randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as jose from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AllocateResponse, WorkerHeartbeat } from '../src/cluster/api.js';
import { generateHs256Key, secretKeyFrom, verifyJobToken, workerToken } from '../src/cluster/auth.js';
import { createScheduler } from '../src/cluster/scheduler/scheduler-app.js';
import type { SchedulerConfig } from '../src/cluster/scheduler/scheduler-config.js';

const X86 = 'x86_64-unknown-linux-gnu';
const DIGEST = 'c'.repeat(64);
const secret = generateHs256Key();
const jobKeyText = randomBytes(32).toString('base64url');
const CERT_SHA256 = Array(32).fill('AB').join(':');

function config(over: Partial<SchedulerConfig> = {}): SchedulerConfig {
  return {
    public_addr: '127.0.0.1:0',
    insecure: false,
    state_dir: '/nonexistent',
    tls: undefined,
    client_auth: { type: 'token', token: 'client-secret' },
    worker_auth: { type: 'jwt_hs256', secret_key: secret, check_worker_ip: false },
    worker_timeout: 30,
    job_token_lifetime: 60,
    log_level: 'warn',
    ...over,
  };
}

function heartbeat(id: string, over: Partial<WorkerHeartbeat> = {}): WorkerHeartbeat {
  return {
    id,
    url: 'https://127.0.0.1:9',
    certSha256: CERT_SHA256,
    hostTriple: X86,
    os: 'Linux',
    cpuModel: 'test',
    cpus: 2,
    memoryBytes: 1e9,
    maxJobs: 2,
    sandbox: 'bwrap',
    resolvers: ['archive'],
    toolchains: [],
    toolchainUploads: 0,
    runningJobs: [],
    jobKey: jobKeyText,
    version: '0',
    ...over,
  };
}

async function serve(cfg: SchedulerConfig) {
  const s = createScheduler({ config: cfg, version: '0.1.0' });
  const url = await s.app.listen({ host: '127.0.0.1', port: 0 });
  return { ...s, url };
}

async function call(
  url: string,
  path: string,
  init: { method?: string; token?: string; body?: unknown; raw?: string; type?: string } = {},
) {
  const headers: Record<string, string> = {};
  if (init.token) headers.authorization = `Bearer ${init.token}`;
  let body: string | undefined;
  if (init.raw !== undefined || init.body !== undefined) {
    headers['content-type'] = init.type ?? 'application/json';
    body = init.raw ?? JSON.stringify(init.body);
  }
  const res = await fetch(`${url}${path}`, { method: init.method ?? (body ? 'POST' : 'GET'), headers, body });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : undefined };
}

describe('scheduler HTTP API', () => {
  let s: Awaited<ReturnType<typeof serve>>;
  let w1: string;
  beforeAll(async () => {
    s = await serve(config());
    w1 = await workerToken(secretKeyFrom(secret), 'w1');
  });
  afterAll(() => s.app.close());

  it('registers a worker with a valid token and serves status to clients', async () => {
    const r = await call(s.url, '/api/v1/workers/heartbeat', { token: w1, body: heartbeat('w1') });
    expect(r.status).toBe(200);
    expect(r.json.heartbeatIntervalMs).toBeGreaterThan(0);
    const st = await call(s.url, '/api/v1/status', { token: 'client-secret' });
    expect(st.status).toBe(200);
    expect(st.json.totals).toMatchObject({ workers: 1, pools: 1, cpus: 2 });
    expect(st.json.pools[0].workers[0]).toMatchObject({ id: 'w1', hostTriple: X86, sandbox: 'bwrap' });
  });

  it('a worker signs off with its own token only; the scheduler drops it at once', async () => {
    const w3 = await workerToken(secretKeyFrom(secret), 'w3');
    expect(
      (await call(s.url, '/api/v1/workers/heartbeat', { token: w3, body: heartbeat('w3') })).status,
    ).toBe(200);
    const ids = async () =>
      (await call(s.url, '/api/v1/status', { token: 'client-secret' })).json.pools.flatMap(
        (p: { workers: { id: string }[] }) => p.workers.map((w) => w.id),
      );
    expect(await ids()).toContain('w3');
    expect((await call(s.url, '/api/v1/workers/leave', { body: { id: 'w3' } })).status).toBe(401);
    const borrowed = await call(s.url, '/api/v1/workers/leave', { token: w1, body: { id: 'w3' } });
    expect(borrowed.status).toBe(403);
    expect(borrowed.json.message).toBe('forbidden: this token belongs to worker "w1", not "w3"');
    expect((await call(s.url, '/api/v1/workers/leave', { token: w3, body: { id: 'w3', x: 1 } })).status).toBe(
      400,
    );
    expect(await ids()).toContain('w3');
    expect((await call(s.url, '/api/v1/workers/leave', { token: w3, body: { id: 'w3' } })).status).toBe(204);
    expect(await ids()).not.toContain('w3');
    expect((await call(s.url, '/api/v1/workers/leave', { token: w3, body: { id: 'w3' } })).status).toBe(404);
  });

  it('serves the status as a web page to a browser holding the client token, escaping what workers sent', async () => {
    const w2 = await workerToken(secretKeyFrom(secret), 'w2');
    const hostile = heartbeat('w2', {
      cpuModel: '<script>alert(1)</script>',
      hostTriple: 'aarch64-unknown-linux-gnu',
    });
    expect((await call(s.url, '/api/v1/workers/heartbeat', { token: w2, body: hostile })).status).toBe(200);
    const page = async (headers: Record<string, string>, path = '/') => {
      const res = await fetch(`${s.url}${path}`, { headers });
      return {
        status: res.status,
        type: res.headers.get('content-type'),
        auth: res.headers.get('www-authenticate'),
        text: await res.text(),
      };
    };
    const basic = (user: string, pass: string) => ({
      authorization: `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`,
    });
    // No or wrong credentials: the browser is asked for them.
    for (const headers of [
      {},
      basic('me', 'wrong'),
      basic('client-secret', ''),
      { authorization: 'Basic !!!' },
    ]) {
      const r = await page(headers);
      expect(r.status).toBe(401);
      expect(r.auth).toMatch(/^Basic realm=/);
      expect(r.text).not.toContain('w1');
    }
    for (const headers of [basic('anyone', 'client-secret'), { authorization: 'Bearer client-secret' }]) {
      for (const path of ['/', '/status']) {
        const r = await page(headers, path);
        expect(r.status).toBe(200);
        expect(r.type).toMatch(/^text\/html/);
        expect(r.text).toContain('<td>w1</td>');
        expect(r.text).toContain(`<h2>${X86}</h2>`);
        expect(r.text).toContain('<h2>aarch64-unknown-linux-gnu</h2>');
        expect(r.text).toContain('&lt;script&gt;alert(1)&lt;/script&gt;');
        expect(r.text).not.toContain('<script>');
      }
    }
  });

  it('refuses forged, missing and borrowed worker tokens', async () => {
    const forged = await workerToken(secretKeyFrom(generateHs256Key()), 'w1');
    expect(
      (await call(s.url, '/api/v1/workers/heartbeat', { token: forged, body: heartbeat('w1') })).status,
    ).toBe(401);
    expect((await call(s.url, '/api/v1/workers/heartbeat', { body: heartbeat('w1') })).status).toBe(401);
    const borrowed = await call(s.url, '/api/v1/workers/heartbeat', { token: w1, body: heartbeat('w2') });
    expect(borrowed.status).toBe(403);
    expect(borrowed.json.message).toMatch(/belongs to worker "w1"/);
    // A client token is not a worker token.
    expect(
      (await call(s.url, '/api/v1/workers/heartbeat', { token: 'client-secret', body: heartbeat('w1') }))
        .status,
    ).toBe(401);
  });

  it('answers malformed input with a 4xx and keeps serving', async () => {
    const bad = [
      await call(s.url, '/api/v1/workers/heartbeat', { token: w1, raw: '{"id": ' }),
      await call(s.url, '/api/v1/workers/heartbeat', { token: w1, raw: 'id=w1', type: 'text/plain' }),
      await call(s.url, '/api/v1/workers/heartbeat', { token: w1, body: { ...heartbeat('w1'), extra: 1 } }),
      await call(s.url, '/api/v1/workers/heartbeat', { token: w1, body: { ...heartbeat('w1'), cpus: -3 } }),
      await call(s.url, '/api/v1/jobs', {
        token: 'client-secret',
        body: { toolchain: { kind: 'archive', digest: 'nothex', hostTriples: [X86] } },
      }),
      await call(s.url, '/api/v1/jobs', { token: 'client-secret', raw: 'x'.repeat(2 * 1024 * 1024) }),
      await call(s.url, '/api/v1/jobs/nosuchjob', { token: 'client-secret' }),
      await call(s.url, '/api/v1/jobs/nosuchjob/finished', { token: w1, body: { workerId: 'w1' } }),
      await call(s.url, '/nowhere'),
    ];
    expect(bad.map((r) => r.status)).toEqual([400, 415, 400, 400, 400, 413, 404, 404, 404]);
    for (const r of bad) expect(typeof r.json.code).toBe('string');
    expect((await call(s.url, '/api/v1/status', { token: 'client-secret' })).status).toBe(200);
  });

  it('allocates with a job token bound to the job and the worker, and frees the slot on finish', async () => {
    expect(
      (
        await call(s.url, '/api/v1/jobs', {
          body: { toolchain: { kind: 'archive', digest: DIGEST, hostTriples: [X86] } },
        })
      ).status,
    ).toBe(401);
    expect(
      (
        await call(s.url, '/api/v1/jobs', {
          token: 'wrong',
          body: { toolchain: { kind: 'archive', digest: DIGEST, hostTriples: [X86] } },
        })
      ).status,
    ).toBe(401);
    const alloc = async () =>
      (
        await call(s.url, '/api/v1/jobs', {
          token: 'client-secret',
          body: { toolchain: { kind: 'archive', digest: DIGEST, hostTriples: [X86] } },
        })
      ).json as AllocateResponse;
    const a = await alloc();
    const b = await alloc();
    if (a.status !== 'assigned' || b.status !== 'assigned') throw new Error('not assigned');
    const key = createSecretKey(Buffer.from(jobKeyText, 'base64url'));
    expect(await verifyJobToken(key, 'w1', a.jobToken)).toMatchObject({
      jobId: a.jobId,
      scope: 'job',
      toolchain: DIGEST,
    });
    expect(await verifyJobToken(key, 'w2', a.jobToken)).toBeUndefined();
    expect(a.hasToolchain).toBe(false);
    const c = await alloc();
    expect(c.status).toBe('no_capacity');
    const done = await call(s.url, `/api/v1/jobs/${a.jobId}/finished`, {
      token: w1,
      body: { workerId: 'w1' },
    });
    expect(done.status).toBe(204);
    expect((await call(s.url, `/api/v1/jobs/${a.jobId}`, { token: 'client-secret' })).json.state).toBe(
      'finished',
    );
    expect((await alloc()).status).toBe('assigned');
  });

  it('passes over the workers a client excludes (its retry after a worker died)', async () => {
    const toolchain = { kind: 'archive', digest: DIGEST, hostTriples: [X86] };
    const r = await call(s.url, '/api/v1/jobs', {
      token: 'client-secret',
      body: { toolchain, exclude: ['w1'] },
    });
    expect(r.status).toBe(200);
    const got = r.json as AllocateResponse;
    expect(got.status === 'no_capacity' || got.worker.id !== 'w1').toBe(true);
    const bad = await call(s.url, '/api/v1/jobs', {
      token: 'client-secret',
      body: { toolchain, exclude: ['../x'] },
    });
    expect(bad.status).toBe(400);
  });

  it('checks the worker IP when asked to', async () => {
    const strict = await serve(
      config({ worker_auth: { type: 'jwt_hs256', secret_key: secret, check_worker_ip: true } }),
    );
    try {
      const far = await call(strict.url, '/api/v1/workers/heartbeat', {
        token: w1,
        body: heartbeat('w1', { url: 'https://10.1.2.3:10601' }),
      });
      expect(far.status).toBe(403);
      const near = await call(strict.url, '/api/v1/workers/heartbeat', { token: w1, body: heartbeat('w1') });
      expect(near.status).toBe(200);
    } finally {
      await strict.app.close();
    }
  });
});

describe('client auth with JWTs', () => {
  it('accepts JWTs signed by a key in the JWKS and refuses expired, foreign and wrong-issuer ones', async () => {
    const { publicKey, privateKey } = await jose.generateKeyPair('ES256');
    const other = await jose.generateKeyPair('ES256');
    const jwk = { ...(await jose.exportJWK(publicKey)), kid: 'k1', alg: 'ES256' };
    // A JWKS endpoint on loopback stands in for the identity provider.
    const jwks = http.createServer((_req, res) => {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ keys: [jwk] }));
    });
    await new Promise<void>((r) => jwks.listen(0, '127.0.0.1', r));
    const jwksUrl = `http://127.0.0.1:${(jwks.address() as AddressInfo).port}/jwks.json`;
    const s = await serve(
      config({ client_auth: { type: 'jwt', jwks_url: jwksUrl, issuer: 'https://idp.example' } }),
    );
    try {
      const sign = (key: Parameters<jose.SignJWT['sign']>[0], iss: string, exp: string | number) =>
        new jose.SignJWT({})
          .setProtectedHeader({ alg: 'ES256', kid: 'k1' })
          .setIssuer(iss)
          .setSubject('dev')
          .setExpirationTime(exp)
          .sign(key);
      const good = await sign(privateKey, 'https://idp.example', '5m');
      expect((await call(s.url, '/api/v1/status', { token: good })).status).toBe(200);
      const expired = await sign(privateKey, 'https://idp.example', Math.floor(Date.now() / 1000) - 60);
      expect((await call(s.url, '/api/v1/status', { token: expired })).status).toBe(401);
      expect(
        (
          await call(s.url, '/api/v1/status', {
            token: await sign(other.privateKey, 'https://idp.example', '5m'),
          })
        ).status,
      ).toBe(401);
      expect(
        (await call(s.url, '/api/v1/status', { token: await sign(privateKey, 'https://evil.example', '5m') }))
          .status,
      ).toBe(401);
      expect((await call(s.url, '/api/v1/status', { token: 'not.a.jwt' })).status).toBe(401);
    } finally {
      await s.app.close();
      jwks.close();
    }
  });
});

describe('clients by name: fair shares and where their jobs went', () => {
  it('names jobs by the client (else its address), shares a full pool, and says when no pool serves a triple', async () => {
    const s = await serve(config());
    try {
      const w = await workerToken(secretKeyFrom(secret), 'w1');
      expect(
        (await call(s.url, '/api/v1/workers/heartbeat', { token: w, body: heartbeat('w1') })).status,
      ).toBe(200);
      const toolchain = { kind: 'archive', digest: DIGEST, hostTriples: [X86] };
      const alloc = async (client?: string, tc: unknown = toolchain) => {
        const r = await call(s.url, '/api/v1/jobs', {
          token: 'client-secret',
          body: { toolchain: tc, ...(client === undefined ? {} : { client }) },
        });
        return { status: r.status, ...(r.json as AllocateResponse) } as AllocateResponse & { status: string };
      };
      const finish = (jobId: string) =>
        call(s.url, `/api/v1/jobs/${jobId}/finished`, { token: w, body: { workerId: 'w1' } });
      const a = await alloc('pi');
      const b = await alloc();
      if (a.status !== 'assigned' || b.status !== 'assigned') throw new Error('not assigned');
      expect((await alloc('laptop')).status).toBe('no_capacity');
      // Three clients asked lately for 2 slots: a share of 1 each. The unnamed one (127.0.0.1) is
      // done; pi, at its share, must leave the freed slot to the laptop, below its share.
      expect((await finish(b.jobId)).status).toBe(204);
      expect(await alloc('pi')).toEqual({
        status: 'no_capacity',
        reason: 'fair share: other clients are waiting for this pool',
      });
      const c = await alloc('laptop');
      if (c.status !== 'assigned') throw new Error('the laptop did not get the freed slot');
      expect((await finish(a.jobId)).status).toBe(204);
      expect((await finish(c.jobId)).status).toBe(204);
      expect(await alloc('pi', { ...toolchain, hostTriples: ['aarch64-unknown-linux-gnu'] })).toMatchObject({
        status: 'no_capacity',
        noWorker: true,
      });
      expect((await alloc('not a name')).status).toBe(400);
      const st = (await call(s.url, '/api/v1/status', { token: 'client-secret' })).json;
      expect(
        st.recentJobs.map((j: { client: string; hostTriple: string }) => [j.client, j.hostTriple]),
      ).toEqual([
        ['laptop', X86],
        ['pi', X86],
        ['127.0.0.1', X86],
      ]);
      expect([st.pools[0].allocations, st.pools[0].noCapacity]).toEqual([3, 2]);
      expect(st.unserved).toEqual([{ hostTriple: 'aarch64-unknown-linux-gnu', noCapacity: 1 }]);
    } finally {
      await s.app.close();
    }
  });
});
