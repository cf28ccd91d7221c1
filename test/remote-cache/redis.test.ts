/**
 * The redis backend against a real redis-server: conformance, then what is redis's own; then two
 * daemons with separate cache dirs sharing results through it, and the faults: a tampered entry,
 * a read-only tier, a wrong password, a server that never answers, redis killed mid-build.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EntryName, RemoteBackend } from '../../core/dist/cache/remote/backend.js';
import { type RedisOptions, redisBackend } from '../../core/dist/cache/remote/redis.js';
import { backendByScheme, backendByType } from '../../core/dist/cache/remote/registry.js';
import { generateSelfSigned } from '../../core/dist/cluster/tls/self-signed.js';
import { silentLogger } from '../../core/dist/log.js';
import { KilnSandbox, removeTree, tmpDir } from '../helpers/kiln.js';
import { have } from '../helpers/prereq.js';
import { backendConformance } from '../helpers/remote-backend-kit.js';
import { haveRedis, type RedisServer, startRedis } from '../helpers/servers/redis.js';
import {
  buildFromTier,
  buildKillingTier,
  buildThroughKiln,
  expectSameObjects,
  fillTier,
  localEntries,
  plainObjects,
  SOURCES,
  tierCounts,
  waitForTier,
  writeProject,
} from '../helpers/shared-cache.js';
import { type SilentServer, silentServer } from '../helpers/silent-server.js';

const available = haveRedis();
const made: RemoteBackend[] = [];
afterAll(async () => {
  for (const b of made.splice(0)) await b.close();
});
const parse = (url: string, table: Record<string, unknown> = {}): RedisOptions =>
  redisBackend.parseOptions(url, table, 'kiln.toml:3');
async function backend(url: string, table: Record<string, unknown> = {}, env: Record<string, string> = {}) {
  const b = await redisBackend.create(parse(url, table), { log: silentLogger, connectTimeoutMs: 2000, env });
  made.push(b);
  return b;
}
const entry = (key: string, namespace = 'ns'): EntryName => ({ namespace, kind: 'r', key });
const signal = () => AbortSignal.timeout(5000);
const hex = () => randomBytes(32).toString('hex');
/** The error a promise rejects with. */
async function rejection(p: Promise<unknown>): Promise<Error & { code?: string }> {
  try {
    await p;
  } catch (err) {
    return err as Error & { code?: string };
  }
  throw new Error('expected a rejection');
}

describe('redis options', () => {
  it('is registered by type and by its three schemes', () => {
    expect(backendByType('redis')).toBe(redisBackend);
    for (const scheme of ['redis', 'rediss', 'redis+unix'])
      expect(backendByScheme(scheme)).toBe(redisBackend);
  });

  it('reads host, port, database, credentials, TLS and a unix socket from the URL', () => {
    expect(parse('redis://cache.example:6380/4')).toMatchObject({
      tls: false,
      host: 'cache.example',
      port: 6380,
      db: 4,
    });
    expect(parse('redis://cache.example')).toMatchObject({
      port: 6379,
      db: 0,
      username: undefined,
      password: undefined,
    });
    expect(parse('rediss://kiln:p%40ss@cache.example/1')).toMatchObject({
      tls: true,
      username: 'kiln',
      password: 'p@ss',
      db: 1,
    });
    expect(parse('redis+unix:///run/redis/redis.sock?db=2')).toMatchObject({
      socketPath: '/run/redis/redis.sock',
      db: 2,
    });
    expect(parse('redis://h', { ttl: 3600, password_env: 'REDIS_PW' })).toMatchObject({
      ttl: 3600,
      passwordEnv: 'REDIS_PW',
    });
    // KILN_REMOTE_STORAGE gives every value as a string.
    expect(parse('redis://h', { ttl: '600' })).toMatchObject({ ttl: 600 });
  });

  it('names the key and where it is for a bad URL or a bad value', () => {
    const cases: [string, Record<string, unknown>, string, string][] = [
      ['http://h/0', {}, 'url', 'redis://[user:password@]host[:port][/db]'],
      ['redis://h/zero', {}, 'url', 'redis://[user:password@]host[:port][/db]'],
      ['redis://h/0?timeout=3', {}, 'url', 'redis://[user:password@]host[:port][/db]'],
      ['redis+unix://host/sock', {}, 'url', 'redis+unix:///path/to/redis.sock'],
      ['redis://h', { ttl: -1 }, 'ttl', 'whole seconds, 0 or more'],
      ['redis://h', { ttl: '1h' }, 'ttl', 'whole seconds, 0 or more'],
      ['redis://h', { password_env: 'not a name' }, 'password_env', 'the name of an environment variable'],
      [
        'redis://:pw@h',
        { password_env: 'PW' },
        'password_env',
        'either a password in the URL or password_env',
      ],
      ['redis://h', { ca_file: '/etc/hostname' }, 'ca_file', 'with a rediss:// URL'],
      ['rediss://h', { ca_file: '/nonexistent/ca.pem' }, 'ca_file', 'the path of a PEM file that exists'],
    ];
    for (const [url, table, key, expected] of cases) {
      const err = (() => {
        try {
          parse(url, table);
        } catch (e) {
          return e as Error & { code?: string };
        }
        throw new Error(`${url} ${JSON.stringify(table)} was accepted`);
      })();
      expect(err.code).toBe('KILN_ERR_CONFIG_INVALID');
      expect(err.message).toContain(`invalid value for "${key}" in kiln.toml:3: expected `);
      expect(err.message).toContain(expected);
    }
  });

  it('describes the URL without its credentials', () => {
    expect(redisBackend.describe('redis://kiln:secret@127.0.0.1:6379/2')).toBe('redis://127.0.0.1:6379/2');
    expect(redisBackend.describe('rediss://:secret@cache.example/0')).toBe('rediss://cache.example/0');
  });

  it('loads its client library only in create', () => {
    const compiled = fs.readFileSync(
      path.join(import.meta.dirname, '../../core/dist/cache/remote/redis.js'),
      'utf8',
    );
    expect(compiled).not.toMatch(/^import .*@redis\/client/m);
    expect(compiled).toContain("await import('@redis/client')");
  });
});

describe.skipIf(!available)('redis backend', () => {
  let server: RedisServer;
  let silent: SilentServer;
  beforeAll(async () => {
    server = await startRedis();
    silent = await silentServer();
  });
  afterAll(async () => {
    await silent?.close();
    await server?.stop();
  });

  backendConformance('redis', {
    make: () => backend(server.url(0)),
    makeHanging: () => backend(`redis://127.0.0.1:${silent.port}/0`),
  });

  it('stores one key per entry, kiln:<namespace>/<kind>/<key>, with the exact bytes', async () => {
    const b = await backend(server.url(0));
    const key = hex();
    const data = Buffer.from([0, 1, 2, 0xff, 0x0d, 0x0a, 0x80]);
    await b.put(entry(key), data, signal());
    expect(
      server.cli(['--raw', 'GET', `kiln:ns/r/${key}`]).equals(Buffer.concat([data, Buffer.from('\n')])),
    ).toBe(true);
    await b.put({ namespace: '', kind: 'm', key }, Buffer.from('no namespace'), signal());
    expect(server.cli(['--raw', 'GET', `kiln:m/${key}`]).toString()).toBe('no namespace\n');
    expect(server.cli(['TTL', `kiln:ns/r/${key}`]).toString()).toBe('-1\n');
  });

  it('uses the database in the URL, over TCP and over the unix socket', async () => {
    const key = hex();
    const overTcp = await backend(server.url(3));
    await overTcp.put(entry(key), Buffer.from('in db 3'), signal());
    expect(server.cli(['--raw', 'GET', `kiln:ns/r/${key}`], { db: 3 }).toString()).toBe('in db 3\n');
    expect(server.cli(['EXISTS', `kiln:ns/r/${key}`], { db: 0 }).toString()).toBe('0\n');
    const overSocket = await backend(`redis+unix://${server.socket}?db=3`);
    expect((await overSocket.get(entry(key), signal()))?.toString()).toBe('in db 3');
    const socketDb0 = await backend(`redis+unix://${server.socket}`);
    expect(await socketDb0.get(entry(key), signal())).toBeUndefined();
  });

  it('gives entries the ttl, when there is one', async () => {
    const b = await backend(server.url(0), { ttl: 120 });
    const key = hex();
    await b.put(entry(key), Buffer.from('expires'), signal());
    const ttl = Number(server.cli(['TTL', `kiln:ns/r/${key}`]).toString());
    expect(ttl).toBeGreaterThan(100);
    expect(ttl).toBeLessThanOrEqual(120);
  });

  it("reports the server's memory as its size", async () => {
    const b = await backend(server.url(0));
    const used = Number(/used_memory:(\d+)/.exec(server.cli(['INFO', 'memory']).toString())?.[1]);
    const size = await b.size?.(signal());
    expect(size).toBeGreaterThan(used / 2);
    expect(size).toBeLessThan(used * 2);
  });

  it('fails fast, and keeps failing fast, once the server is killed', async () => {
    const doomed = await startRedis();
    const b = await backend(doomed.url(0));
    await b.put(entry('k'), Buffer.from('before'), signal());
    await doomed.kill();
    await doomed.stop();
    for (let i = 0; i < 3; i++) {
      const started = Date.now();
      const err = await rejection(b.get(entry('k'), signal()));
      // The first may still meet the dying connection; then nothing listens.
      expect(err.message).toMatch(
        i === 0
          ? /^(Socket closed unexpectedly|connect ECONNREFUSED 127\.0\.0\.1:\d+)$/
          : /^connect ECONNREFUSED 127\.0\.0\.1:\d+$/,
      );
      expect(Date.now() - started).toBeLessThan(1000);
    }
  });

  it('a server that never answers costs one connection per aborted request, not a queue', async () => {
    const hung = await silentServer();
    try {
      const b = await backend(`redis://127.0.0.1:${hung.port}/0`);
      for (let i = 0; i < 3; i++) {
        await expect(b.get(entry(hex()), AbortSignal.timeout(100))).rejects.toThrow(
          'The operation was aborted due to timeout',
        );
      }
      expect(hung.accepted()).toBe(3);
      const started = Date.now();
      await b.close();
      expect(Date.now() - started).toBeLessThan(500);
    } finally {
      await hung.close();
    }
  });
});

describe.skipIf(!available)('redis with a password', () => {
  let server: RedisServer;
  beforeAll(async () => {
    server = await startRedis({ password: 'right horse battery' });
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('a wrong password is a KILN_ERR_STORAGE_DENIED error that says what to check, every time, at once', async () => {
    const b = await backend(server.url(0, 'wrong'));
    for (let i = 0; i < 2; i++) {
      const started = Date.now();
      const err = await rejection(b.get(entry(hex()), signal()));
      expect(err.code).toBe('KILN_ERR_STORAGE_DENIED');
      expect(err.message).toBe(
        `the remote cache redis://127.0.0.1:${server.port}/0 refused the credentials: ` +
          'WRONGPASS invalid username-password pair or user is disabled. (check the user and password in the URL)',
      );
      expect(Date.now() - started).toBeLessThan(1000);
    }
    await expect(b.put(entry(hex()), Buffer.from('x'), signal())).rejects.toMatchObject({
      code: 'KILN_ERR_STORAGE_DENIED',
    });
  });

  it('no password is NOAUTH; password_env naming an unset variable is a config error', async () => {
    const none = await backend(server.url(0, ''));
    const err = await rejection(none.get(entry(hex()), signal()));
    expect(err.code).toBe('KILN_ERR_STORAGE_DENIED');
    expect(err.message).toMatch(/refused the credentials: NOAUTH /);
    const unset = await rejection(backend(server.url(0, ''), { password_env: 'KILN_TEST_REDIS_PW' }));
    expect(unset.code).toBe('KILN_ERR_CONFIG_INVALID');
    expect(unset.message).toBe(
      'invalid value for "password_env" in kiln.toml:3: expected a variable that is set (KILN_TEST_REDIS_PW is empty or unset)',
    );
    const wrong = await backend(
      server.url(0, ''),
      { password_env: 'KILN_TEST_REDIS_PW' },
      { KILN_TEST_REDIS_PW: 'no' },
    );
    const err2 = await rejection(wrong.put(entry(hex()), Buffer.from('x'), signal()));
    expect(err2.code).toBe('KILN_ERR_STORAGE_DENIED');
    expect(err2.message).toContain('(check the password in environment variable KILN_TEST_REDIS_PW)');
  });

  it('the right password, in the URL or from password_env, works', async () => {
    const key = hex();
    const inUrl = await backend(server.url(0));
    await inUrl.put(entry(key), Buffer.from('authenticated'), signal());
    const fromEnv = await backend(
      server.url(0, ''),
      { password_env: 'KILN_TEST_REDIS_PW' },
      {
        KILN_TEST_REDIS_PW: 'right horse battery',
      },
    );
    expect((await fromEnv.get(entry(key), signal()))?.toString()).toBe('authenticated');
  });
});

describe.skipIf(!available)('redis over TLS (rediss://)', () => {
  let server: RedisServer;
  let caFile: string;
  beforeAll(async () => {
    const cert = generateSelfSigned('kiln test redis', ['127.0.0.1']);
    server = await startRedis({ tls: cert });
    caFile = path.join(server.dir, 'ca.pem');
    fs.writeFileSync(caFile, cert.cert);
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('round-trips with ca_file naming the CA of the self-signed certificate', async () => {
    const b = await backend(`rediss://127.0.0.1:${server.tlsPort}/0`, { ca_file: caFile });
    const data = randomBytes(100_000);
    const key = hex();
    await b.put(entry(key), data, signal());
    expect((await b.get(entry(key), signal()))?.equals(data)).toBe(true);
  });

  it('refuses the server without the CA, or with another CA', async () => {
    const b = await backend(`rediss://127.0.0.1:${server.tlsPort}/0`);
    await expect(b.get(entry(hex()), signal())).rejects.toThrow(/self[- ]signed certificate/);
    const other = path.join(server.dir, 'other.pem');
    fs.writeFileSync(other, generateSelfSigned('someone else', ['127.0.0.1']).cert);
    const c = await backend(`rediss://127.0.0.1:${server.tlsPort}/0`, { ca_file: other });
    await expect(c.get(entry(hex()), signal())).rejects.toThrow(/self[- ]signed certificate/);
  });
});

/** A daemon whose only remote tier is `url` (with extra `|key=value` attributes). */
function daemonWith(url: string, attrs = ''): KilnSandbox {
  return new KilnSandbox('native', { KILN_REMOTE_STORAGE: `${url}${attrs}` });
}

/** The keys under `kiln:<namespace>/` in database 0. */
const keysOf = (server: RedisServer, namespace: string): string[] =>
  server
    .cli(['--raw', 'KEYS', `kiln:${namespace}/*`])
    .toString()
    .split('\n')
    .filter(Boolean);

describe.runIf(available && have('gcc'))('two daemons share results through redis', () => {
  let server: RedisServer;
  let locked: RedisServer;
  let silent: SilentServer;
  let dir: string;
  const made: KilnSandbox[] = [];
  const sandbox = (url: string, attrs = '') => {
    const sb = daemonWith(url, attrs);
    made.push(sb);
    return sb;
  };
  beforeAll(async () => {
    dir = tmpDir('kiln-redis-');
    server = await startRedis();
    locked = await startRedis({ password: 'the right one' });
    silent = await silentServer();
  });
  afterAll(async () => {
    for (const sb of made) sb.dispose();
    await server?.stop();
    await locked?.stop();
    await silent?.close();
    if (dir) removeTree(dir);
  });

  it('the second daemon, with an empty local cache, hits every object from redis; then from its own disk', async () => {
    const a = sandbox(server.url(0), '|namespace=share');
    const b = sandbox(server.url(0), '|namespace=share');
    const proj = path.join(dir, 'proj-share');
    writeProject(proj, 'share');
    const want = plainObjects(proj);

    const entries = await fillTier(a, proj, want, 'share');
    // --show-stats lists the tier by its label, with the size the server reports.
    const listed = (a.stats() as unknown as { tiers: { label: string; readOnly: boolean; size?: number }[] })
      .tiers;
    expect(listed.map((t) => [t.label, t.readOnly])).toEqual([
      [`redis://127.0.0.1:${server.port}/0 (namespace share)`, false],
    ]);
    expect(listed[0]?.size).toBeGreaterThan(0);
    expect(keysOf(server, 'share')).toHaveLength(entries);

    const bTier = buildFromTier(b, proj, want, 'share');
    expect(bTier.corrupt + bTier.errors + bTier.timeouts).toBe(0);

    // Backfilled: the next build is served by b's own disk and asks redis nothing.
    await new Promise((r) => setTimeout(r, 200));
    expectSameObjects(buildThroughKiln(b, proj), want);
    const again = tierCounts(b, 'share');
    expect(again.hits + again.misses).toBe(bTier.hits + bTier.misses);
    expect(b.stats().stats.hitsDirect).toBe(2 * SOURCES.length);
  });

  it('a tampered entry is a counted miss and the object is compiled correctly', async () => {
    const a = sandbox(server.url(0), '|namespace=tamper');
    const proj = path.join(dir, 'proj-tamper');
    writeProject(proj, 'tamper');
    const want = plainObjects(proj);
    buildThroughKiln(a, proj);
    const entries = localEntries(a);
    await waitForTier(a, 'tamper', (c) => c.writes === entries);
    // Flip one byte in the middle of every stored entry, behind kiln's back.
    const keys = keysOf(server, 'tamper');
    expect(keys).toHaveLength(entries);
    for (const key of keys) {
      const data = server.cli(['--raw', 'GET', key]).subarray(0, -1);
      data[data.length >> 1] ^= 0x40;
      server.cli(['-x', 'SET', key], { input: data });
      expect(server.cli(['--raw', 'GET', key]).subarray(0, -1).equals(data)).toBe(true);
    }
    const b = sandbox(server.url(0), '|namespace=tamper');
    expectSameObjects(buildThroughKiln(b, proj), want);
    const c = tierCounts(b, 'tamper');
    expect(b.stats().stats.misses).toBe(SOURCES.length);
    expect(c.hits).toBe(0);
    expect(c.corrupt).toBeGreaterThanOrEqual(SOURCES.length);
  });

  it('a read-only tier is read but never written', async () => {
    const before = Number(server.cli(['DBSIZE']).toString());
    const a = sandbox(server.url(0), '|read_only=true|namespace=readonly');
    const proj = path.join(dir, 'proj-ro');
    writeProject(proj, 'readonly');
    expectSameObjects(buildThroughKiln(a, proj), plainObjects(proj));
    a.stopAndWait();
    expect(keysOf(server, 'readonly')).toEqual([]);
    expect(Number(server.cli(['DBSIZE']).toString())).toBe(before);
    const c = tierCounts(a, 'readonly');
    expect(c.writes).toBe(0);
    expect(c.hits).toBe(0);
    // At least a manifest and a result looked up for each object.
    expect(c.misses).toBeGreaterThanOrEqual(2 * SOURCES.length);
  });

  it('a wrong password: every compile succeeds locally, the errors are counted, nothing is written', async () => {
    const a = sandbox(locked.url(0, 'wrong'), '|namespace=pw');
    const proj = path.join(dir, 'proj-pw');
    writeProject(proj, 'password');
    expectSameObjects(buildThroughKiln(a, proj), plainObjects(proj));
    const c = await waitForTier(a, 'pw', (x) => x.errors > 0);
    expect(c.errors).toBeGreaterThan(0);
    expect(c.hits + c.writes).toBe(0);
    expect(locked.cli(['DBSIZE']).toString()).toBe('0\n');
    expect(a.log()).toContain('refused the credentials: WRONGPASS');
    // The label never shows the password.
    expect(JSON.stringify(a.stats())).not.toContain('wrong');
  });

  it('a [[cache.remote]] table with the backend keys: database, ttl and a password from password_env', async () => {
    const a = new KilnSandbox('native', { KILN_TEST_REDIS_PW: 'the right one' });
    made.push(a);
    a.writeConfig(
      [
        '[[cache.remote]]',
        `url = "redis://127.0.0.1:${locked.port}/4"`,
        'namespace = "toml"',
        'ttl = 300',
        'password_env = "KILN_TEST_REDIS_PW"',
        '',
      ].join('\n'),
    );
    const proj = path.join(dir, 'proj-toml');
    writeProject(proj, 'toml');
    expectSameObjects(buildThroughKiln(a, proj), plainObjects(proj));
    const entries = localEntries(a);
    const c = await waitForTier(a, 'toml', (x) => x.writes === entries);
    expect(c.writes).toBe(entries);
    const keys = locked
      .cli(['--raw', 'KEYS', 'kiln:toml/*'], { db: 4 })
      .toString()
      .split('\n')
      .filter(Boolean);
    expect(keys).toHaveLength(entries);
    for (const key of keys) {
      const ttl = Number(locked.cli(['TTL', key], { db: 4 }).toString());
      expect(ttl).toBeGreaterThan(250);
      expect(ttl).toBeLessThanOrEqual(300);
    }
  });

  it('a server that accepts and never answers costs one deadline, then is skipped while it backs off', async () => {
    const a = sandbox(`redis://127.0.0.1:${silent.port}/0`, '|operation_timeout_ms=400');
    const proj = path.join(dir, 'proj-silent');
    writeProject(proj, 'silent');
    const started = Date.now();
    expectSameObjects(buildThroughKiln(a, proj), plainObjects(proj));
    const took = Date.now() - started;
    const c = tierCounts(a, '127.0.0.1');
    expect(c.timeouts).toBeGreaterThanOrEqual(1);
    expect(c.skipped).toBeGreaterThanOrEqual(1);
    expect(c.hits).toBe(0);
    expect(took).toBeLessThan(SOURCES.length * 800);
    // The silent server accepts in this process, whose event loop the synchronous builds held.
    await new Promise((r) => setTimeout(r, 100));
    expect(silent.accepted()).toBeGreaterThanOrEqual(1);
  });

  it('redis killed in the middle of a build: every object is still correct and the errors are counted', async () => {
    const own = await startRedis();
    const a = sandbox(own.url(0), '|namespace=killed');
    const proj = path.join(dir, 'proj-killed');
    writeProject(proj, 'killed');
    const want = plainObjects(proj);
    try {
      await buildKillingTier(a, proj, want, 'killed', () => own.kill());
    } finally {
      await own.stop();
    }
  });
});
