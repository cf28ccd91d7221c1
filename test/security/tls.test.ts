/**
 * Attacks on the cluster's transport and tokens (issue 11, item 14): impostor schedulers and
 * workers, plain http, expired and expiry-less tokens, a JWKS over http, a framed status page,
 * secrets on the command line. Real HTTPS servers on loopback, real kiln-dist processes.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import * as jose from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AllocateResponse, WorkerHeartbeat } from '../../core/src/cluster/api.js';
import { generateHs256Key, secretKeyFrom, workerToken } from '../../core/src/cluster/auth.js';
import { type DistConfig, parseDistTable } from '../../core/src/cluster/client-config.js';
import { DistClient, DistError } from '../../core/src/cluster/dist-client.js';
import { signHs256 } from '../../core/src/cluster/hs256-jwt.js';
import { createScheduler } from '../../core/src/cluster/scheduler/scheduler-app.js';
import {
  loadSchedulerConfig,
  type SchedulerConfig,
} from '../../core/src/cluster/scheduler/scheduler-config.js';
import { fingerprintOf } from '../../core/src/cluster/tls/pinned-agent.js';
import { generateSelfSigned } from '../../core/src/cluster/tls/self-signed.js';
import { loadServerTls } from '../../core/src/cluster/tls/server-tls.js';
import { Heartbeat } from '../../core/src/cluster/worker/heartbeat.js';
import { loadWorkerConfig } from '../../core/src/cluster/worker/worker-config.js';
import { KilnError } from '../../core/src/errors.js';
import {
  clusterFiles,
  clusterStatus,
  KILN_DIST,
  kilnDist,
  type ServerProcess,
  startServer,
  writeSchedulerConfig,
} from '../helpers/cluster.js';
import { removeTree } from '../helpers/kiln.js';

const KILN = path.join(path.dirname(KILN_DIST), 'kiln.js');
const X86 = 'x86_64-unknown-linux-gnu';
const DIGEST = 'c'.repeat(64);
const CLIENT_TOKEN = 'client-token-that-must-not-leak';
const certA = generateSelfSigned('kiln A', ['127.0.0.1']);
const certB = generateSelfSigned('kiln B', ['127.0.0.1']);
const secret = generateHs256Key();
let dir: string;
const closers: (() => Promise<unknown> | unknown)[] = [];

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-tls-'));
});

afterAll(async () => {
  for (const close of closers.reverse()) await close();
  removeTree(dir);
});

/** An HTTPS server with `cert` that records every request it gets and answers `body`. */
async function recorder(cert: { cert: string; key: string }, body: unknown = {}) {
  const seen: { url: string; authorization: string | undefined }[] = [];
  const server = https.createServer({ cert: cert.cert, key: cert.key }, (req, res) => {
    seen.push({ url: req.url ?? '', authorization: req.headers.authorization });
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify(body));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  closers.push(() => {
    server.closeAllConnections();
    return new Promise((r) => server.close(r));
  });
  return { url: `https://127.0.0.1:${(server.address() as AddressInfo).port}`, seen };
}

function distConfig(url: string, over: Partial<DistConfig> = {}): DistConfig {
  return {
    scheduler_url: url,
    auth: { type: 'token', token: CLIENT_TOKEN },
    insecure: false,
    scheduler_cert_sha256: undefined,
    scheduler_ca: undefined,
    force_remote_build: false,
    keep_tiny_local: true,
    toolchain_cache_size: 1e9,
    job_timeout: 5,
    connect_timeout: 2,
    ...over,
  };
}

function client(config: DistConfig): DistClient {
  const c = new DistClient(config);
  closers.push(() => c.close());
  return c;
}

async function distError(p: Promise<unknown>): Promise<DistError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(DistError);
  return err as DistError;
}

function schedulerConfig(over: Partial<SchedulerConfig> = {}): SchedulerConfig {
  return {
    public_addr: '127.0.0.1:0',
    insecure: false,
    state_dir: dir,
    tls: undefined,
    client_auth: { type: 'token', token: CLIENT_TOKEN },
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
    certSha256: fingerprintOf(certB.cert),
    hostTriple: X86,
    os: 'Linux',
    cpuModel: 'test',
    cpus: 2,
    memoryBytes: 1e9,
    maxJobs: 2,
    sandbox: 'bwrap',
    resolvers: ['archive'],
    toolchains: [DIGEST],
    runningJobs: [],
    jobKey: generateHs256Key(),
    version: '0',
    ...over,
  };
}

/** A real scheduler over HTTPS with certificate A. */
async function tlsScheduler(over: Partial<SchedulerConfig> = {}) {
  const s = createScheduler({ config: schedulerConfig(over), version: '0', tls: certA });
  const url = await s.app.listen({ host: '127.0.0.1', port: 0 });
  closers.push(() => s.app.close());
  return { ...s, url };
}

const workerAuth = async (id: string) => `Bearer ${await workerToken(secretKeyFrom(secret), id)}`;

function writeToml(name: string, text: string): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, text);
  return file;
}

function configError(load: () => unknown): KilnError {
  try {
    load();
  } catch (err) {
    expect(err).toBeInstanceOf(KilnError);
    return err as KilnError;
  }
  throw new Error('expected a config error');
}

describe('pinned certificates', () => {
  it('a client refuses a scheduler whose certificate is not the pinned one, and sends it nothing', async () => {
    const impostor = await recorder(certB, { pools: [] });
    const pinnedToA = client(distConfig(impostor.url, { scheduler_cert_sha256: fingerprintOf(certA.cert) }));
    const err = await distError(pinnedToA.status());
    expect(err.reason).toBe('scheduler certificate mismatch');
    expect(impostor.seen).toEqual([]);
    // Control: pinned to the certificate it serves, the same server is reached (with the token).
    const pinnedToB = client(distConfig(impostor.url, { scheduler_cert_sha256: fingerprintOf(certB.cert) }));
    await pinnedToB.status();
    expect(impostor.seen).toEqual([{ url: '/api/v1/status', authorization: `Bearer ${CLIENT_TOKEN}` }]);
  });

  it('a client without a pin or CA refuses a self-signed scheduler', async () => {
    const server = await recorder(certA, { pools: [] });
    const err = await distError(client(distConfig(server.url)).status());
    expect(err.reason).toBe('scheduler certificate refused');
    expect(server.seen).toEqual([]);
  });

  it('a client trusts a scheduler certificate named by scheduler_ca_file', async () => {
    const server = await recorder(certA, { pools: [] });
    await client(distConfig(server.url, { scheduler_ca: certA.cert })).status();
    expect(server.seen).toHaveLength(1);
  });

  it('a client reaches a worker only with the certificate the scheduler vouched for', async () => {
    const s = await tlsScheduler();
    const impostor = await recorder(certA, { ok: true, workerId: 'w1' });
    // The scheduler learnt worker w1 with certificate B; someone else (certificate A) holds its address.
    const hb = await s.app.inject({
      method: 'POST',
      url: '/api/v1/workers/heartbeat',
      headers: { authorization: await workerAuth('w1') },
      payload: heartbeat('w1', { url: impostor.url }),
    });
    expect(hb.statusCode, hb.body).toBe(200);
    const c = client(distConfig(s.url, { scheduler_cert_sha256: fingerprintOf(certA.cert) }));
    const alloc = (await c.allocate({ kind: 'archive', digest: DIGEST, hostTriples: [X86] })) as Extract<
      AllocateResponse,
      { status: 'assigned' }
    >;
    expect(alloc.status).toBe('assigned');
    expect(alloc.worker.certSha256).toBe(fingerprintOf(certB.cert));
    const err = await distError(c.ping(alloc.worker.url, alloc.jobId, alloc.jobToken));
    expect(err.reason).toBe('worker certificate mismatch');
    expect(impostor.seen).toEqual([]);
    // Control: the real worker (certificate B) at a URL the scheduler vouches for is reached.
    const real = await recorder(certB, { ok: true, workerId: 'w2' });
    await s.app.inject({
      method: 'POST',
      url: '/api/v1/workers/heartbeat',
      headers: { authorization: await workerAuth('w2') },
      payload: heartbeat('w2', { url: real.url }),
    });
    const probe = await c.probeToken('w2');
    await c.ping(real.url, probe.jobId, probe.jobToken);
    expect(real.seen).toEqual([
      { url: `/api/v1/jobs/${probe.jobId}/ping`, authorization: `Bearer ${probe.jobToken}` },
    ]);
  });

  it('the scheduler generates its certificate once, 0600, and keeps it across restarts', () => {
    const files = clusterFiles(path.join(dir, 'gen'));
    const config = writeSchedulerConfig(files);
    const again = kilnDist(['tls', 'fingerprint', '--config', config]);
    expect(again).toBe(files.schedulerPin);
    const key = path.join(files.dir, 'scheduler-state', 'tls', 'key.pem');
    expect(fs.statSync(key).mode & 0o777).toBe(0o600);
    expect(fs.statSync(path.dirname(key)).mode & 0o777).toBe(0o700);
  });
});

describe('server certificates', () => {
  it('an operator certificate is used as given; a wrong key, a missing half or a readable generated key stop the server', () => {
    const put = (name: string, text: string) => {
      const f = path.join(dir, name);
      fs.writeFileSync(f, text, { mode: 0o600 });
      return f;
    };
    const cert_file = put('op.crt', certA.cert);
    const tls = loadServerTls({ cert_file, key_file: put('op.key', certA.key) }, dir, 'x', []);
    expect(tls.fingerprint).toBe(fingerprintOf(certA.cert));
    const wrongKey = configError(() =>
      loadServerTls({ cert_file, key_file: put('b.key', certB.key) }, dir, 'x', []),
    );
    expect(wrongKey.message).toMatch(/does not belong to the certificate/);
    expect(configError(() => loadServerTls({ cert_file }, dir, 'x', [])).message).toMatch(/go together/);
    const state = path.join(dir, 'state-readable');
    loadServerTls(undefined, state, 'x', ['127.0.0.1']);
    fs.chmodSync(path.join(state, 'tls', 'key.pem'), 0o644);
    expect(configError(() => loadServerTls(undefined, state, 'x', [])).message).toMatch(
      /readable by others.*chmod 600/,
    );
  });
});

describe('plain http', () => {
  it('is refused without insecure = true: client, worker and scheduler configs, and at connect time', async () => {
    const http = 'http://127.0.0.1:10600';
    expect(configError(() => parseDistTable({ scheduler_url: http }, 'config.toml')).message).toMatch(
      /dist\.scheduler_url.*https:\/\/.*insecure = true/,
    );
    const worker = writeToml(
      'plain-worker.toml',
      `scheduler_url = "${http}"\n[scheduler_auth]\ntype = "jwt_token"\ntoken = "t"\n`,
    );
    expect(configError(() => loadWorkerConfig(worker)).message).toMatch(/scheduler_url.*insecure = true/);
    const publicHttp = writeToml(
      'plain-public.toml',
      `scheduler_url = "https://s"\npublic_url = "http://w:1"\n[scheduler_auth]\ntype = "jwt_token"\ntoken = "t"\n`,
    );
    expect(configError(() => loadWorkerConfig(publicHttp)).message).toMatch(/public_url/);
    // A secure scheduler does not hand out plain-http workers.
    const s = await tlsScheduler();
    const hb = await s.app.inject({
      method: 'POST',
      url: '/api/v1/workers/heartbeat',
      headers: { authorization: await workerAuth('plain') },
      payload: heartbeat('plain', { url: 'http://127.0.0.1:9', certSha256: undefined }),
    });
    expect(hb.statusCode).toBe(403);
    expect(hb.json().message).toMatch(/plain http/);
    // A client never sends a job token over plain http, whatever a scheduler says.
    const c = client(distConfig(s.url, { scheduler_cert_sha256: fingerprintOf(certA.cert) }));
    expect((await distError(c.ping('http://127.0.0.1:9', 'j', 'token'))).reason).toBe('worker is plain http');
  });

  it('a worker with an http scheduler_url stops with a one-line error, no stack', () => {
    const worker = writeToml(
      'plain-worker-cli.toml',
      `scheduler_url = "http://127.0.0.1:1"\n[scheduler_auth]\ntype = "jwt_token"\ntoken = "t"\n`,
    );
    const r = spawnSync(process.execPath, [KILN_DIST, 'worker', '--config', worker], { encoding: 'utf8' });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^kiln-dist: invalid value for "scheduler_url" .*insecure = true\n$/);
  });

  let insecure: ServerProcess | undefined;
  afterAll(() => insecure?.stop());

  it('works with insecure = true, and the scheduler warns at start', async () => {
    const files = clusterFiles(path.join(dir, 'insecure'));
    insecure = await startServer([
      'scheduler',
      '--config',
      writeSchedulerConfig(files, 0, 'insecure = true'),
    ]);
    expect(insecure.url).toMatch(/^http:\/\//);
    expect(insecure.output()).toMatch(/insecure = true: serving plain HTTP/);
    expect((await clusterStatus(insecure.url, files.clientToken)).totals.workers).toBe(0);
    const c = client(
      distConfig(insecure.url, { insecure: true, auth: { type: 'token', token: files.clientToken } }),
    );
    expect((await c.status()).totals.workers).toBe(0);
    // The client CLI too, with its own warning.
    const config = writeToml(
      'insecure-client.toml',
      `[dist]\nscheduler_url = "${insecure.url}"\ninsecure = true\n[dist.auth]\ntype = "token"\ntoken = "${files.clientToken}"\n`,
    );
    const { NODE_EXTRA_CA_CERTS: _, ...env } = process.env;
    const r = spawnSync(process.execPath, [KILN, '--dist-status', '--json'], {
      encoding: 'utf8',
      env: { ...env, KILN_CONFIG: config, KILN_RUNTIME_DIR: path.join(dir, 'rt') },
    });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/insecure = true: plain http allowed/);
    expect(JSON.parse(r.stdout).schedulerUrl).toBe(insecure.url);
  });
});

describe('tokens', () => {
  it('the scheduler refuses an expired worker token and one without an expiry', async () => {
    const s = await tlsScheduler();
    const key = secretKeyFrom(secret);
    const now = Math.floor(Date.now() / 1000);
    const send = (token: string) =>
      s.app.inject({
        method: 'POST',
        url: '/api/v1/workers/heartbeat',
        headers: { authorization: `Bearer ${token}` },
        payload: heartbeat('w1'),
      });
    expect((await send(signHs256(key, { sub: 'w1', aud: 'kiln-scheduler', exp: now - 5 }))).statusCode).toBe(
      401,
    );
    expect((await send(signHs256(key, { sub: 'w1', aud: 'kiln-scheduler' }))).statusCode).toBe(401);
    expect((await send(await workerToken(key, 'w1'))).statusCode).toBe(200);
  });

  it('worker tokens expire after 90 days unless --days says otherwise', () => {
    const keyFile = path.join(dir, 'days.key');
    fs.writeFileSync(keyFile, `${secret}\n`, { mode: 0o600 });
    const expOf = (token: string) =>
      JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()).exp;
    const now = Date.now() / 1000;
    const plain = kilnDist([
      'auth',
      'generate-jwt-hs256-worker-token',
      '--worker',
      'w',
      '--secret-key-file',
      keyFile,
    ]);
    expect(expOf(plain) - now).toBeGreaterThan(89.9 * 86_400);
    expect(expOf(plain) - now).toBeLessThan(90.1 * 86_400);
    const short = kilnDist([
      'auth',
      'generate-jwt-hs256-worker-token',
      '--worker',
      'w',
      '--days',
      '7',
      '--secret-key-file',
      keyFile,
    ]);
    expect(Math.round((expOf(short) - now) / 86_400)).toBe(7);
  });

  it('the scheduler refuses a client JWT without an expiry', async () => {
    const { publicKey, privateKey } = await jose.generateKeyPair('ES256');
    const s = await tlsScheduler({
      client_auth: { type: 'jwt', key: (await jose.exportSPKI(publicKey)) as string },
    });
    const status = (jwt: string) =>
      s.app.inject({ method: 'GET', url: '/api/v1/status', headers: { authorization: `Bearer ${jwt}` } });
    const noExp = await new jose.SignJWT({ sub: 'ci' }).setProtectedHeader({ alg: 'ES256' }).sign(privateKey);
    expect((await status(noExp)).statusCode).toBe(401);
    const withExp = await new jose.SignJWT({ sub: 'ci' })
      .setProtectedHeader({ alg: 'ES256' })
      .setExpirationTime('5m')
      .sign(privateKey);
    expect((await status(withExp)).statusCode).toBe(200);
  });

  it('a jwks_url over http is refused unless insecure = true', () => {
    const body = (extra: string) =>
      `${extra}\n[client_auth]\ntype = "jwt"\njwks_url = "http://idp.example/jwks.json"\n[worker_auth]\ntype = "jwt_hs256"\nsecret_key = "${secret}"\n`;
    const err = configError(() => loadSchedulerConfig(writeToml('jwks.toml', body(''))));
    expect(err.message).toMatch(/client_auth\.jwks_url.*https:\/\//);
    expect(
      loadSchedulerConfig(writeToml('jwks-insecure.toml', body('insecure = true'))).client_auth.jwks_url,
    ).toBe('http://idp.example/jwks.json');
  });

  let scheduler: ServerProcess | undefined;
  afterAll(() => scheduler?.stop());

  it('a worker refuses to start on an expired token, and picks up a rotated token file without a restart', async () => {
    const files = clusterFiles(path.join(dir, 'rotate'));
    const config = writeSchedulerConfig(files);
    scheduler = await startServer(['scheduler', '--config', config]);
    expect(scheduler.fingerprint).toBe(files.schedulerPin);
    const tokenFile = path.join(files.dir, 'w1.token');
    fs.writeFileSync(
      tokenFile,
      signHs256(secretKeyFrom(files.secret), { sub: 'w1', aud: 'kiln-scheduler', exp: 1_000_000 }),
      { mode: 0o600 },
    );
    const workerToml = writeToml(
      'expired-worker.toml',
      `id = "w1"\nscheduler_url = "${scheduler.url}"\nscheduler_cert_sha256 = "${files.schedulerPin}"\ncache_dir = "${path.join(files.dir, 'w1')}"\n[scheduler_auth]\ntype = "jwt_token"\ntoken_file = "${tokenFile}"\n`,
    );
    const r = spawnSync(process.execPath, [KILN_DIST, 'worker', '--config', workerToml], {
      encoding: 'utf8',
    });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/worker token expired on 1970-01-12.*rotate-worker-token/);
    expect(r.stderr).not.toMatch(/\n\s+at /);

    const worker = loadWorkerConfig(workerToml);
    const token = () => fs.readFileSync(tokenFile, 'utf8').trim();
    const hb = new Heartbeat({
      schedulerUrl: scheduler.url,
      token,
      pin: worker.scheduler_cert_sha256!,
      log: { error() {}, warn() {}, info() {}, debug() {} },
      info: () => heartbeat('w1'),
    });
    closers.push(() => hb.stop());
    expect(await hb.beat()).toBe(false);
    kilnDist(['auth', 'rotate-worker-token', '--worker', 'w1', '--config', config, '--out', tokenFile]);
    expect(fs.statSync(tokenFile).mode & 0o777).toBe(0o600);
    expect(await hb.beat()).toBe(true);
    expect((await clusterStatus(scheduler.url, files.clientToken)).totals.workers).toBe(1);
    // Pinned to another certificate, the worker's heartbeat does not get through.
    const wrongPin = new Heartbeat({
      schedulerUrl: scheduler.url,
      token,
      pin: fingerprintOf(certA.cert),
      log: { error() {}, warn() {}, info() {}, debug() {} },
      info: () => heartbeat('w1'),
    });
    closers.push(() => wrongPin.stop());
    expect(await wrongPin.beat()).toBe(false);
  });
});

describe('status page', () => {
  it('forbids framing, scripts, sniffing and referrers, on the page and on its 401', async () => {
    const s = await tlsScheduler();
    const basic = `Basic ${Buffer.from(`any:${CLIENT_TOKEN}`).toString('base64')}`;
    const page = await s.app.inject({ method: 'GET', url: '/', headers: { authorization: basic } });
    const denied = await s.app.inject({ method: 'GET', url: '/status' });
    expect(page.statusCode).toBe(200);
    expect(denied.statusCode).toBe(401);
    for (const res of [page, denied]) {
      const csp = String(res.headers['content-security-policy']);
      expect(csp).toMatch(/default-src 'none'/);
      expect(csp).toMatch(/frame-ancestors 'none'/);
      expect(csp).not.toMatch(/script-src|unsafe-inline/);
      expect(res.headers['x-frame-options']).toBe('DENY');
      expect(res.headers['x-content-type-options']).toBe('nosniff');
      expect(res.headers['referrer-policy']).toBe('no-referrer');
    }
    // The page's only style sheet is the one the policy names by hash.
    const style = /<style>([\s\S]*?)<\/style>/.exec(page.body)![1]!;
    const hash = (await import('node:crypto')).createHash('sha256').update(style).digest('base64');
    expect(String(page.headers['content-security-policy'])).toContain(`style-src 'sha256-${hash}'`);
  });
});

describe('secrets', () => {
  const SECRET = 'Zm9vYmFyLXRoaXMtaXMtYS1zZWNyZXQta2V5LW9rYXk';

  it('kiln-dist never echoes its command line, and refuses secrets given on it', () => {
    for (const args of [
      [SECRET],
      ['auth', SECRET],
      ['tls', SECRET],
      ['frobnicate', '--secret-key', SECRET],
      ['auth', 'generate-jwt-hs256-worker-token', '--worker', 'w', '--secret-key', SECRET],
      ['auth', 'generate-jwt-hs256-worker-token', '--worker', 'w', `--secret-key=${SECRET}`],
    ]) {
      const r = spawnSync(process.execPath, [KILN_DIST, ...args], { encoding: 'utf8' });
      expect(r.status, args.join(' ')).toBe(2);
      expect(r.stderr + r.stdout).not.toContain(SECRET);
    }
    const unknown = spawnSync(process.execPath, [KILN_DIST, 'frobnicate'], { encoding: 'utf8' });
    expect(unknown.stderr).toMatch(/unknown command "frobnicate"/);
  });

  it('reads the scheduler key, client and worker tokens from files (relative to the config) or the environment', () => {
    fs.writeFileSync(path.join(dir, 'sched.key'), `${secret}\n`, { mode: 0o600 });
    fs.writeFileSync(path.join(dir, 'client.token'), `${CLIENT_TOKEN}\n`, { mode: 0o600 });
    const file = writeToml(
      'files.toml',
      `[client_auth]\ntype = "token"\ntoken_file = "client.token"\n[worker_auth]\ntype = "jwt_hs256"\nsecret_key_file = "sched.key"\n`,
    );
    const config = loadSchedulerConfig(file, {});
    expect(config.worker_auth.secret_key).toBe(secret);
    expect(config.client_auth.token).toBe(CLIENT_TOKEN);
    const other = generateHs256Key();
    expect(loadSchedulerConfig(file, { KILN_DIST_SECRET_KEY: other }).worker_auth.secret_key).toBe(other);
    const both = writeToml(
      'both.toml',
      `[client_auth]\ntype = "none"\n[worker_auth]\ntype = "jwt_hs256"\nsecret_key = "${secret}"\nsecret_key_file = "sched.key"\n`,
    );
    expect(configError(() => loadSchedulerConfig(both, {})).message).toMatch(/not both/);
    const missing = writeToml(
      'missing.toml',
      `[client_auth]\ntype = "none"\n[worker_auth]\ntype = "jwt_hs256"\n`,
    );
    expect(configError(() => loadSchedulerConfig(missing, {})).message).toMatch(/secret_key_file/);

    const dist = parseDistTable(
      { scheduler_url: 'https://s', auth: { type: 'token', token_file: 'client.token' } },
      path.join(dir, 'config.toml'),
      {},
    );
    expect(dist.auth.token).toBe(CLIENT_TOKEN);
    const fromEnv = parseDistTable({ scheduler_url: 'https://s', auth: { type: 'token' } }, 'c.toml', {
      KILN_DIST_CLIENT_TOKEN: 'from-env',
    });
    expect(fromEnv.auth.token).toBe('from-env');
  });
});
