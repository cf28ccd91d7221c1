/**
 * The HTTP/WebDAV tier against a real nginx (Debian's, with its dav module) on 127.0.0.1: the
 * backend's conformance checks, WebDAV without create_full_put_path, basic and bearer auth, the
 * bazel layout; then two daemons with separate cache dirs sharing results through it, and the
 * faults: nginx killed mid-build, a server that never answers, a tampered entry, a read-only tier,
 * a wrong password.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RemoteBackend } from '../../core/dist/cache/remote/backend.js';
import { httpBackend } from '../../core/dist/cache/remote/http.js';
import { silentLogger } from '../../core/dist/log.js';
import { KilnSandbox, removeTree, tmpDir } from '../helpers/kiln.js';
import { have } from '../helpers/prereq.js';
import { backendConformance } from '../helpers/remote-backend-kit.js';
import { type Nginx, startNginx } from '../helpers/servers/nginx.js';
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

const available = have('nginx') && have('gcc');
const ctx = { log: silentLogger, connectTimeoutMs: 500, env: {} };

let dir: string;
let nginx: Nginx;
let silent: SilentServer;
beforeAll(async () => {
  if (!available) return;
  dir = tmpDir('kiln-http-');
  nginx = await startNginx(path.join(dir, 'nginx'));
  silent = await silentServer();
});
afterAll(async () => {
  await nginx?.stop();
  await silent?.close();
  if (dir) removeTree(dir);
});

const backend = (url: string, table: Record<string, unknown> = {}): Promise<RemoteBackend> =>
  httpBackend.create(httpBackend.parseOptions(url, table, 'test'), ctx);

describe.runIf(available)('HTTP/WebDAV backend against nginx', () => {
  backendConformance('nginx /cache/', {
    make: () => backend(nginx.url('cache')),
    makeHanging: () => backend(`http://127.0.0.1:${silent.port}/cache/`),
  });

  const name = { namespace: 'ns', kind: 'r' as const, key: 'ab'.repeat(32) };
  const signal = () => AbortSignal.timeout(5000);

  it('creates the collections with MKCOL where the server does not (plain WebDAV)', async () => {
    const b = await backend(nginx.url('plain'));
    await b.put(name, Buffer.from('via mkcol'), signal());
    expect(fs.readFileSync(path.join(nginx.root, 'plain', 'ns', 'r', name.key), 'utf8')).toBe('via mkcol');
    expect((await b.get(name, signal()))?.toString()).toBe('via mkcol');
    await b.close();
  });

  it('sends basic auth from the URL and reports a wrong password as an error naming the status', async () => {
    const url = nginx.url('basic').replace('http://', 'http://kiln:s3cret@');
    const good = await backend(url);
    await good.put(name, Buffer.from('authorized'), signal());
    expect((await good.get(name, signal()))?.toString()).toBe('authorized');
    const bad = await backend(nginx.url('basic').replace('http://', 'http://kiln:wrong@'));
    await expect(bad.get(name, signal())).rejects.toThrow(/HTTP 401 \(check the credentials\)/);
    const none = await backend(nginx.url('basic'));
    await expect(none.put(name, Buffer.from('x'), signal())).rejects.toThrow(/HTTP 401/);
    expect(fs.readFileSync(path.join(nginx.root, 'basic', 'ns', 'r', name.key), 'utf8')).toBe('authorized');
    for (const b of [good, bad, none]) await b.close();
  });

  it('sends a bearer token from the environment variable named by bearer_token_env', async () => {
    process.env.KILN_TEST_HTTP_TOKEN = 'tok3n';
    const good = await backend(nginx.url('bearer'), { bearer_token_env: 'KILN_TEST_HTTP_TOKEN' });
    await good.put(name, Buffer.from('bearer ok'), signal());
    expect((await good.get(name, signal()))?.toString()).toBe('bearer ok');
    process.env.KILN_TEST_HTTP_TOKEN = 'wrong';
    const bad = await backend(nginx.url('bearer'), { bearer_token_env: 'KILN_TEST_HTTP_TOKEN' });
    await expect(bad.get(name, signal())).rejects.toThrow(/HTTP 401/);
    delete process.env.KILN_TEST_HTTP_TOKEN;
    expect(() =>
      httpBackend.parseOptions(nginx.url('bearer'), { bearer_token_env: 'KILN_TEST_HTTP_TOKEN' }, 'here'),
    ).toThrow(/bearer_token_env.*KILN_TEST_HTTP_TOKEN is empty or unset/);
    for (const b of [good, bad]) await b.close();
  });

  it('stores under ac/<sha256> with layout = "bazel"', async () => {
    const b = await backend(`${nginx.url('cache')}bz/`, { layout: 'bazel' });
    await b.put(name, Buffer.from('bazel'), signal());
    const stored = nginx.files('cache').filter((f) => f.startsWith('bz/'));
    expect(stored).toHaveLength(1);
    expect(stored[0]).toMatch(/^bz\/ac\/[0-9a-f]{64}$/);
    await b.close();
  });
});

/** A daemon whose only remote tier is `url` (with extra `|key=value` attributes). */
function daemonWith(url: string, attrs = ''): KilnSandbox {
  return new KilnSandbox('native', { KILN_REMOTE_STORAGE: `${url}${attrs}` });
}

describe.runIf(available)('two daemons share results through nginx', () => {
  const made: KilnSandbox[] = [];
  const sandbox = (url: string, attrs = '') => {
    const sb = daemonWith(url, attrs);
    made.push(sb);
    return sb;
  };
  afterAll(() => {
    for (const sb of made) sb.dispose();
  });

  it('the second daemon, with an empty local cache, hits every object from the tier; then from its own disk', async () => {
    const url = `${nginx.url('cache')}share/`;
    const a = sandbox(url);
    const b = sandbox(url);
    // Both compile in one directory: the sources and their paths are the same.
    const proj = path.join(dir, 'proj-share');
    writeProject(proj, 'share');
    const want = plainObjects(proj);

    const entries = await fillTier(a, proj, want, 'share');
    expect(nginx.files('cache').filter((f) => f.startsWith('share/'))).toHaveLength(entries);

    const bTier = buildFromTier(b, proj, want, 'share');

    // Backfilled: the next build is served by b's own disk and asks the tier nothing.
    await new Promise((r) => setTimeout(r, 200));
    expectSameObjects(buildThroughKiln(b, proj), want);
    const again = tierCounts(b, 'share');
    expect(again.hits + again.misses).toBe(bTier.hits + bTier.misses);
    expect(b.stats().stats.hitsDirect).toBe(2 * SOURCES.length);
  });

  it('a tampered entry is a counted miss and the object is compiled correctly', async () => {
    const url = `${nginx.url('cache')}tamper/`;
    const a = sandbox(url);
    const proj = path.join(dir, 'proj-tamper');
    writeProject(proj, 'tamper');
    const want = plainObjects(proj);
    buildThroughKiln(a, proj);
    const entries = localEntries(a);
    await waitForTier(a, 'tamper', (c) => c.writes === entries);
    // Flip one byte in the middle of every stored entry, as a hostile or broken server might.
    for (const f of nginx.files('cache').filter((x) => x.startsWith('tamper/'))) {
      const file = path.join(nginx.root, 'cache', f);
      const data = fs.readFileSync(file);
      data[data.length >> 1] ^= 0x40;
      fs.writeFileSync(file, data);
    }
    const b = sandbox(url);
    expectSameObjects(buildThroughKiln(b, proj), want);
    const c = tierCounts(b, 'tamper');
    expect(b.stats().stats.misses).toBe(SOURCES.length);
    expect(c.hits).toBe(0);
    expect(c.corrupt).toBeGreaterThanOrEqual(SOURCES.length);
  });

  it('a read-only tier is read but never written', async () => {
    const url = `${nginx.url('cache')}readonly/`;
    const a = sandbox(url, '|read_only=true');
    const proj = path.join(dir, 'proj-ro');
    writeProject(proj, 'readonly');
    expectSameObjects(buildThroughKiln(a, proj), plainObjects(proj));
    a.stopAndWait();
    expect(nginx.files('cache').filter((f) => f.startsWith('readonly/'))).toEqual([]);
    const c = tierCounts(a, 'readonly');
    expect(c.writes).toBe(0);
    expect(c.misses).toBeGreaterThan(0);
  });

  it('a wrong password: every compile succeeds locally, the errors are counted', async () => {
    const url = nginx.url('basic').replace('http://', 'http://kiln:wrong@');
    const a = sandbox(`${url}pw/`);
    const proj = path.join(dir, 'proj-pw');
    writeProject(proj, 'password');
    expectSameObjects(buildThroughKiln(a, proj), plainObjects(proj));
    const c = await waitForTier(a, '/basic/pw/', (x) => x.errors > 0);
    expect(c.errors).toBeGreaterThan(0);
    expect(c.hits).toBe(0);
    expect(nginx.files('basic').filter((f) => f.startsWith('pw/'))).toEqual([]);
    // The label never shows the password.
    expect(JSON.stringify(a.stats())).not.toContain('wrong');
  });

  it('a server that accepts and never answers costs one deadline, then is skipped while it backs off', async () => {
    const a = sandbox(`http://127.0.0.1:${silent.port}/`, '|operation_timeout_ms=400');
    const proj = path.join(dir, 'proj-silent');
    writeProject(proj, 'silent');
    const started = Date.now();
    expectSameObjects(buildThroughKiln(a, proj), plainObjects(proj));
    const took = Date.now() - started;
    const c = tierCounts(a, '127.0.0.1');
    expect(c.timeouts).toBeGreaterThanOrEqual(1);
    expect(c.skipped).toBeGreaterThanOrEqual(1);
    // Four compiles; without the backoff each lookup would wait 400 ms (and more for the manifest).
    expect(took).toBeLessThan(SOURCES.length * 800);
    // The silent server accepts in this process, whose event loop the synchronous builds held.
    await new Promise((r) => setTimeout(r, 100));
    expect(silent.accepted()).toBeGreaterThanOrEqual(1);
  });
});

describe.runIf(available)('nginx killed in the middle of a build', () => {
  it('every object is still correct and the errors are counted', async () => {
    const own = await startNginx(path.join(dir, 'nginx-killed'));
    const url = `${own.url('cache')}killed/`;
    const a = daemonWith(url);
    try {
      const proj = path.join(dir, 'proj-killed');
      writeProject(proj, 'killed');
      const want = plainObjects(proj);
      await buildKillingTier(a, proj, want, 'killed', () => own.kill());
    } finally {
      a.dispose();
      await own.stop();
    }
  });
});
