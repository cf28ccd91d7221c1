/**
 * The memcached backend against a real memcached: conformance, then chunking, eviction and
 * tampering; then two daemons with separate cache dirs sharing results through it, and the faults:
 * a tampered entry, a read-only tier, a server that never answers, memcached killed mid-build, a
 * full memcached that evicted chunks.
 */
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EntryName, RemoteBackend } from '../../core/dist/cache/remote/backend.js';
import { itemKey, type MemcachedOptions, memcachedBackend } from '../../core/dist/cache/remote/memcached.js';
import { backendByScheme, backendByType } from '../../core/dist/cache/remote/registry.js';
import { silentLogger } from '../../core/dist/log.js';
import { KilnSandbox, removeTree, tmpDir } from '../helpers/kiln.js';
import { have } from '../helpers/prereq.js';
import { backendConformance } from '../helpers/remote-backend-kit.js';
import { haveMemcached, type MemcachedServer, startMemcached } from '../helpers/servers/memcached.js';
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

const available = haveMemcached();
const made: RemoteBackend[] = [];
afterAll(async () => {
  for (const b of made.splice(0)) await b.close();
});
const parse = (url: string, table: Record<string, unknown> = {}): MemcachedOptions =>
  memcachedBackend.parseOptions(url, table, 'kiln.toml:7');
async function backend(url: string, table: Record<string, unknown> = {}) {
  const b = await memcachedBackend.create(parse(url, table), {
    log: silentLogger,
    connectTimeoutMs: 2000,
    env: {},
  });
  made.push(b);
  return b;
}
const entry = (key: string, namespace = 'ns'): EntryName => ({ namespace, kind: 'r', key });
const signal = () => AbortSignal.timeout(10_000);
const hex = () => randomBytes(32).toString('hex');
const FLAG_WHOLE = 0x6b6c6e31;
const FLAG_HEAD = 0x6b6c6e48;
const FLAG_CHUNK = 0x6b6c6e43;
const MiB = 1024 * 1024;

describe('memcached options', () => {
  it('is registered by type and by its scheme', () => {
    expect(backendByType('memcached')).toBe(memcachedBackend);
    expect(backendByScheme('memcached')).toBe(memcachedBackend);
  });

  it('reads host and port from the URL, and a ttl', () => {
    expect(parse('memcached://cache.example')).toEqual({
      url: 'memcached://cache.example',
      host: 'cache.example',
      port: 11211,
      ttl: 0,
    });
    expect(parse('memcached://10.0.0.5:11311/', { ttl: 86400 })).toMatchObject({
      host: '10.0.0.5',
      port: 11311,
      ttl: 86400,
    });
    expect(memcachedBackend.describe('memcached://10.0.0.5:11311/')).toBe('memcached://10.0.0.5:11311');
    // KILN_REMOTE_STORAGE gives every value as a string.
    expect(parse('memcached://h', { ttl: '60' })).toMatchObject({ ttl: 60 });
  });

  it('names the key and where it is for a bad URL or ttl', () => {
    const cases: [string, Record<string, unknown>, string, string][] = [
      ['redis://h', {}, 'url', 'memcached://host[:port] (one server, no credentials)'],
      ['memcached://h/pool', {}, 'url', 'memcached://host[:port] (one server, no credentials)'],
      ['memcached://u:p@h', {}, 'url', 'memcached://host[:port] (one server, no credentials)'],
      ['memcached://h', { ttl: -5 }, 'ttl', 'whole seconds from 0 (no expiry) to 2592000 (30 days)'],
      ['memcached://h', { ttl: 2592001 }, 'ttl', 'whole seconds from 0 (no expiry) to 2592000 (30 days)'],
    ];
    for (const [url, table, key, expected] of cases) {
      expect(() => parse(url, table)).toThrow(
        `invalid value for "${key}" in kiln.toml:7: expected ${expected}`,
      );
      try {
        parse(url, table);
      } catch (err) {
        expect((err as { code?: string }).code).toBe('KILN_ERR_CONFIG_INVALID');
      }
    }
  });

  it('keeps item keys short and printable, hashing the rest', () => {
    expect(itemKey(entry('ab12'))).toBe('kiln:ns/r/ab12');
    expect(itemKey({ namespace: '', kind: 'm', key: 'ab12' })).toBe('kiln:m/ab12');
    const spaced = { namespace: 'team a', kind: 'r' as const, key: 'ab12' };
    expect(itemKey(spaced)).toBe(`kilnh:${createHash('sha256').update('kiln:team a/r/ab12').digest('hex')}`);
    const long = entry('f'.repeat(64), 'n'.repeat(150));
    expect(itemKey(long)).toMatch(/^kilnh:[0-9a-f]{64}$/);
  });
});

describe.skipIf(!available)('memcached backend', () => {
  let server: MemcachedServer;
  let silent: SilentServer;
  beforeAll(async () => {
    server = await startMemcached({ itemSize: '1m' });
    silent = await silentServer();
  });
  afterAll(async () => {
    await silent?.close();
    await server?.stop();
  });

  backendConformance('memcached', {
    make: () => backend(server.url),
    makeHanging: () => backend(`memcached://127.0.0.1:${silent.port}`),
  });

  it('stores an entry that fits as one item under kiln:<namespace>/<kind>/<key>', async () => {
    const b = await backend(server.url);
    const key = hex();
    const data = randomBytes(200_000);
    await b.put(entry(key), data, signal());
    const item = await server.raw.get(`kiln:ns/r/${key}`);
    expect(item?.flags).toBe(FLAG_WHOLE);
    expect(item?.data.equals(data)).toBe(true);
    expect((await server.raw.keys()).filter((k) => k.startsWith(`kiln:ns/r/${key}`))).toEqual([
      `kiln:ns/r/${key}`,
    ]);
  });

  it('splits an entry bigger than the item size limit into chunks and a head, and joins them exactly', async () => {
    const b = await backend(server.url);
    const key = hex();
    const data = randomBytes(3 * MiB + 17);
    await b.put(entry(key), data, signal());
    const head = await server.raw.get(`kiln:ns/r/${key}`);
    expect(head?.flags).toBe(FLAG_HEAD);
    const digest = createHash('sha256').update(data).digest('hex');
    expect(head?.data.toString()).toMatch(
      new RegExp(`^kiln-chunks 1 [0-9a-f]{16} 4 ${data.length} ${digest}$`),
    );
    const nonce = head?.data.toString().split(' ')[2];
    const chunks = (await server.raw.keys()).filter((k) => k.startsWith(`kiln:ns/r/${key}#`)).sort();
    expect(chunks).toEqual([0, 1, 2, 3].map((i) => `kiln:ns/r/${key}#${nonce}#${i}`));
    const first = await server.raw.get(chunks[0] as string);
    expect(first?.flags).toBe(FLAG_CHUNK);
    expect(first?.data.length).toBe(MiB - 512);
    const back = await b.get(entry(key), signal());
    expect(back?.length).toBe(data.length);
    expect(back?.equals(data)).toBe(true);
    expect(await b.exists(entry(key), signal())).toBe(true);
    // Removing takes the chunks too.
    await b.remove(entry(key), signal());
    expect((await server.raw.keys()).filter((k) => k.startsWith(`kiln:ns/r/${key}`))).toEqual([]);
  });

  it('round-trips entries under hashed keys', async () => {
    const b = await backend(server.url);
    const odd = { namespace: 'team a', kind: 'r' as const, key: hex() };
    const data = randomBytes(2 * MiB);
    await b.put(odd, data, signal());
    expect((await b.get(odd, signal()))?.equals(data)).toBe(true);
    expect((await server.raw.get(itemKey(odd)))?.flags).toBe(FLAG_HEAD);
  });

  const chunked = async (b: RemoteBackend) => {
    const key = hex();
    const data = randomBytes(2 * MiB + 5);
    await b.put(entry(key), data, signal());
    const chunks = (await server.raw.keys()).filter((k) => k.startsWith(`kiln:ns/r/${key}#`)).sort();
    expect(chunks).toHaveLength(3);
    return { key, data, chunks };
  };

  it('a chunk that is gone makes a miss, not a short or wrong entry', async () => {
    const b = await backend(server.url);
    const { key, chunks } = await chunked(b);
    await server.raw.delete(chunks[1] as string);
    expect(await b.get(entry(key), signal())).toBeUndefined();
    expect(await b.exists(entry(key), signal())).toBe(false);
  });

  it('a tampered chunk, a chunk of another length, or a tampered head makes a miss', async () => {
    const b = await backend(server.url);
    const flipped = await chunked(b);
    const chunk = await server.raw.get(flipped.chunks[2] as string);
    const evil = Buffer.from(chunk?.data as Buffer);
    evil[100] = (evil[100] as number) ^ 1;
    await server.raw.set(flipped.chunks[2] as string, FLAG_CHUNK, evil);
    expect(await b.get(entry(flipped.key), signal())).toBeUndefined();

    const shortened = await chunked(b);
    const last = (await server.raw.get(shortened.chunks[2] as string))?.data as Buffer;
    await server.raw.set(shortened.chunks[2] as string, FLAG_CHUNK, last.subarray(1));
    expect(await b.get(entry(shortened.key), signal())).toBeUndefined();

    const headless = await chunked(b);
    const head = (await server.raw.get(`kiln:ns/r/${headless.key}`))?.data.toString() as string;
    await server.raw.set(
      `kiln:ns/r/${headless.key}`,
      FLAG_HEAD,
      Buffer.from(head.replace(/ \d+ [0-9a-f]{64}$/, ' 9 0')),
    );
    expect(await b.get(entry(headless.key), signal())).toBeUndefined();

    // A chunk passed off as a whole entry, or an item kiln did not write, is not an entry either.
    await server.raw.set(`kiln:ns/r/${headless.key}`, 0, Buffer.from('someone else'));
    expect(await b.get(entry(headless.key), signal())).toBeUndefined();
    expect(await b.exists(entry(headless.key), signal())).toBe(false);
    const control = await chunked(b);
    expect((await b.get(entry(control.key), signal()))?.equals(control.data)).toBe(true);
  });

  it('gives items the ttl, when there is one', async () => {
    const b = await backend(server.url, { ttl: 600 });
    const key = hex();
    await b.put(entry(key), randomBytes(MiB + 1), signal());
    const mine = (await server.raw.keys()).filter((k) => k.startsWith(`kiln:ns/r/${key}`));
    expect(mine).toHaveLength(3);
    for (const k of mine) {
      const left = await server.raw.expiry(k);
      expect(left).toBeGreaterThan(590);
      expect(left).toBeLessThanOrEqual(601);
    }
    const forever = hex();
    await (await backend(server.url)).put(entry(forever), Buffer.from('no ttl'), signal());
    expect(await server.raw.expiry(`kiln:ns/r/${forever}`)).toBe(-1);
  });

  it("reports the server's bytes as its size", async () => {
    const b = await backend(server.url);
    const size = await b.size?.(signal());
    expect(size).toBe(Number((await server.raw.stats()).bytes));
  });

  it('fails fast, and keeps failing fast, once the server is killed', async () => {
    const doomed = await startMemcached();
    const b = await backend(doomed.url);
    await b.put(entry('k'), Buffer.from('before'), signal());
    expect((await b.get(entry('k'), signal()))?.toString()).toBe('before');
    await doomed.kill();
    for (let i = 0; i < 3; i++) {
      const started = Date.now();
      await expect(b.get(entry('k'), signal())).rejects.toThrow(
        new RegExp(
          `^memcached memcached://127.0.0.1:${doomed.port}: (connect ECONNREFUSED|the connection closed|read ECONNRESET)`,
        ),
      );
      expect(Date.now() - started).toBeLessThan(1000);
    }
  });

  it('a server that never answers costs one connection per aborted request, not a queue', async () => {
    const hung = await silentServer();
    try {
      const b = await backend(`memcached://127.0.0.1:${hung.port}`);
      for (let i = 0; i < 3; i++) {
        await expect(b.get(entry(hex()), AbortSignal.timeout(100))).rejects.toThrow(
          'The operation was aborted due to timeout',
        );
      }
      expect(hung.accepted()).toBe(3);
    } finally {
      await hung.close();
    }
  });
});

describe('a server that is not memcached', () => {
  /** A server that answers anything with `answer`. */
  async function answering(answer: Buffer) {
    const server = net.createServer((s) => {
      s.on('error', () => {});
      s.once('data', () => s.write(answer));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return { server, url: `memcached://127.0.0.1:${(server.address() as net.AddressInfo).port}` };
  }

  it('a text-protocol answer, or a claimed 4 GB answer, fails the request instead of being read', async () => {
    const text = await answering(Buffer.from('ERROR\r\n'.repeat(4)));
    const huge = Buffer.alloc(24);
    huge[0] = 0x81;
    huge.writeUInt32BE(0xffffffff, 8);
    huge.writeUInt32BE(1, 12);
    const greedy = await answering(huge);
    try {
      await expect((await backend(text.url)).get(entry(hex()), signal())).rejects.toThrow(
        'not a memcached binary protocol answer (magic 0x45)',
      );
      await expect((await backend(greedy.url)).get(entry(hex()), signal())).rejects.toThrow(
        'an answer of 4294967295 bytes, over the limit of 1073745920',
      );
    } finally {
      text.server.close();
      greedy.server.close();
    }
  });
});

describe.skipIf(!available)('a memcached with 1 KiB items', () => {
  let server: MemcachedServer;
  beforeAll(async () => {
    server = await startMemcached({ itemSize: '1k', args: ['-o', 'slab_chunk_max=512'] });
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('splits into 512-byte chunks and joins them exactly', async () => {
    const b = await backend(server.url);
    const key = hex();
    const data = randomBytes(10_000);
    await b.put(entry(key), data, signal());
    const chunks = (await server.raw.keys()).filter((k) => k.startsWith(`kiln:ns/r/${key}#`));
    expect(chunks).toHaveLength(20);
    expect((await b.get(entry(key), signal()))?.equals(data)).toBe(true);
    const small = hex();
    await b.put(entry(small), Buffer.from('x'.repeat(512)), signal());
    expect((await server.raw.get(`kiln:ns/r/${small}`))?.flags).toBe(FLAG_WHOLE);
  });
});

describe.skipIf(!available)('a full memcached', () => {
  let server: MemcachedServer;
  beforeAll(async () => {
    server = await startMemcached({ memoryMb: 4, itemSize: '1m' });
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('under many puts, every get is the exact bytes or a miss', async () => {
    const b = await backend(server.url);
    const written = new Map<string, Buffer>();
    let failedPuts = 0;
    for (let i = 0; i < 60; i++) {
      const key = hex();
      // Whole items and chunked entries of 1 to 4 chunks, ~60 MiB into 4 MiB.
      const data = randomBytes(i % 3 === 0 ? 50_000 + i * 1000 : MiB + ((i * 389_111) % (3 * MiB)));
      try {
        await b.put(entry(key), data, signal());
        written.set(key, data);
      } catch (err) {
        expect((err as Error).message).toMatch(/out of memory|value too large/);
        failedPuts++;
      }
    }
    let hits = 0;
    let misses = 0;
    let torn = 0;
    for (const [key, data] of written) {
      const back = await b.get(entry(key), signal());
      if (back === undefined) {
        misses++;
        // A head whose chunks were evicted: the case the digest and the chunk checks are for.
        if ((await server.raw.get(`kiln:ns/r/${key}`))?.flags === FLAG_HEAD) torn++;
      } else {
        expect(back.equals(data)).toBe(true);
        hits++;
      }
    }
    expect(hits).toBeGreaterThan(0);
    expect(misses).toBeGreaterThan(0);
    expect(torn).toBeGreaterThan(0);
    expect(Number((await server.raw.stats()).evictions)).toBeGreaterThan(0);
    expect(written.size + failedPuts).toBe(60);
  });
});

/** A daemon whose only remote tier is `url` (with extra `|key=value` attributes). */
function daemonWith(url: string, attrs = ''): KilnSandbox {
  return new KilnSandbox('native', { KILN_REMOTE_STORAGE: `${url}${attrs}` });
}

const keysOf = async (server: MemcachedServer, namespace: string): Promise<string[]> =>
  (await server.raw.keys()).filter((k) => k.startsWith(`kiln:${namespace}/`));

describe.runIf(available && have('gcc'))('two daemons share results through memcached', () => {
  let server: MemcachedServer;
  let silent: SilentServer;
  let dir: string;
  const made: KilnSandbox[] = [];
  const sandbox = (url: string, attrs = '') => {
    const sb = daemonWith(url, attrs);
    made.push(sb);
    return sb;
  };
  beforeAll(async () => {
    dir = tmpDir('kiln-memcached-');
    server = await startMemcached();
    silent = await silentServer();
  });
  afterAll(async () => {
    for (const sb of made) sb.dispose();
    await server?.stop();
    await silent?.close();
    if (dir) removeTree(dir);
  });

  it('the second daemon, with an empty local cache, hits every object from memcached; then from its own disk', async () => {
    const a = sandbox(server.url, '|namespace=share');
    const b = sandbox(server.url, '|namespace=share');
    const proj = path.join(dir, 'proj-share');
    writeProject(proj, 'share');
    const want = plainObjects(proj);

    const entries = await fillTier(a, proj, want, 'share');
    // --show-stats lists the tier by its label, with the size the server reports.
    const listed = (a.stats() as unknown as { tiers: { label: string; readOnly: boolean; size?: number }[] })
      .tiers;
    expect(listed.map((t) => [t.label, t.readOnly])).toEqual([
      [`memcached://127.0.0.1:${server.port} (namespace share)`, false],
    ]);
    expect(listed[0]?.size).toBeGreaterThan(0);
    expect(await keysOf(server, 'share')).toHaveLength(entries);

    const bTier = buildFromTier(b, proj, want, 'share');
    expect(bTier.corrupt + bTier.errors + bTier.timeouts).toBe(0);

    await new Promise((r) => setTimeout(r, 200));
    expectSameObjects(buildThroughKiln(b, proj), want);
    const again = tierCounts(b, 'share');
    expect(again.hits + again.misses).toBe(bTier.hits + bTier.misses);
    expect(b.stats().stats.hitsDirect).toBe(2 * SOURCES.length);
  });

  it('a tampered entry is a counted miss and the object is compiled correctly', async () => {
    const a = sandbox(server.url, '|namespace=tamper');
    const proj = path.join(dir, 'proj-tamper');
    writeProject(proj, 'tamper');
    const want = plainObjects(proj);
    buildThroughKiln(a, proj);
    const entries = localEntries(a);
    await waitForTier(a, 'tamper', (c) => c.writes === entries);
    const keys = await keysOf(server, 'tamper');
    expect(keys).toHaveLength(entries);
    for (const key of keys) {
      const item = await server.raw.get(key);
      const data = Buffer.from(item?.data as Buffer);
      data[data.length >> 1] ^= 0x40;
      await server.raw.set(key, item?.flags as number, data);
    }
    const b = sandbox(server.url, '|namespace=tamper');
    expectSameObjects(buildThroughKiln(b, proj), want);
    const c = tierCounts(b, 'tamper');
    expect(b.stats().stats.misses).toBe(SOURCES.length);
    expect(c.hits).toBe(0);
    expect(c.corrupt).toBeGreaterThanOrEqual(SOURCES.length);
  });

  it('a read-only tier is read but never written', async () => {
    const before = Number((await server.raw.stats()).total_items);
    const a = sandbox(server.url, '|read_only=true|namespace=readonly');
    const proj = path.join(dir, 'proj-ro');
    writeProject(proj, 'readonly');
    expectSameObjects(buildThroughKiln(a, proj), plainObjects(proj));
    a.stopAndWait();
    expect(await keysOf(server, 'readonly')).toEqual([]);
    expect(Number((await server.raw.stats()).total_items)).toBe(before);
    const c = tierCounts(a, 'readonly');
    expect(c.writes).toBe(0);
    expect(c.hits).toBe(0);
    // At least a manifest and a result looked up for each object.
    expect(c.misses).toBeGreaterThanOrEqual(2 * SOURCES.length);
  });

  it('a [[cache.remote]] table with the ttl key', async () => {
    const a = new KilnSandbox('native');
    made.push(a);
    a.writeConfig(
      ['[[cache.remote]]', `url = "${server.url}"`, 'namespace = "toml"', 'ttl = 600', ''].join('\n'),
    );
    const proj = path.join(dir, 'proj-toml');
    writeProject(proj, 'toml');
    expectSameObjects(buildThroughKiln(a, proj), plainObjects(proj));
    const entries = localEntries(a);
    expect((await waitForTier(a, 'toml', (x) => x.writes === entries)).writes).toBe(entries);
    const keys = await keysOf(server, 'toml');
    expect(keys).toHaveLength(entries);
    for (const key of keys) {
      const left = await server.raw.expiry(key);
      expect(left).toBeGreaterThan(550);
      expect(left).toBeLessThanOrEqual(601);
    }
  });

  it('a server that accepts and never answers costs one deadline, then is skipped while it backs off', async () => {
    const a = sandbox(`memcached://127.0.0.1:${silent.port}`, '|operation_timeout_ms=400');
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

  it('memcached killed in the middle of a build: every object is still correct and the errors are counted', async () => {
    const own = await startMemcached();
    const a = sandbox(own.url, '|namespace=killed');
    const proj = path.join(dir, 'proj-killed');
    writeProject(proj, 'killed');
    const want = plainObjects(proj);
    try {
      await buildKillingTier(a, proj, want, 'killed', () => own.kill());
    } finally {
      await own.stop();
    }
  });

  it('chunks gone from under their heads, then a full memcached: misses, never a wrong object', async () => {
    // 1 KiB items, so objects are chunked (manifests are not); 2 MB, so junk evicts.
    const tiny = await startMemcached({ memoryMb: 2, itemSize: '1k', args: ['-o', 'slab_chunk_max=512'] });
    try {
      const proj = path.join(dir, 'proj-full');
      writeProject(proj, 'full');
      const want = plainObjects(proj);
      const a = sandbox(tiny.url, '|namespace=full|compression=none');
      expectSameObjects(buildThroughKiln(a, proj), want);
      const entries = localEntries(a);
      await waitForTier(a, 'full', (c) => c.writes === entries);
      // One chunk of every chunked entry (the objects) goes, as an eviction would take it.
      let torn = 0;
      for (const k of await keysOf(tiny, 'full')) {
        const head = await tiny.raw.get(k);
        if (head?.flags !== FLAG_HEAD) continue;
        const [, , nonce] = head.data.toString().split(' ');
        await tiny.raw.delete(`${k}#${nonce}#1`);
        torn++;
      }
      expect(torn).toBe(SOURCES.length);
      const b = sandbox(tiny.url, '|namespace=full|compression=none');
      expectSameObjects(buildThroughKiln(b, proj), want);
      const bTier = tierCounts(b, 'full');
      // What is not chunked (the manifests) is found; each object is a miss, not a damaged entry.
      expect(bTier.hits).toBe(2 * SOURCES.length);
      expect(bTier.misses).toBeGreaterThanOrEqual(SOURCES.length);
      expect(bTier.corrupt + bTier.otherFormat).toBe(0);
      expect(b.stats().stats.misses).toBe(SOURCES.length);

      // Now full: junk in chunk-sized items evicts what is oldest, kiln's items among them.
      await waitForTier(b, 'full', (c) => c.writes > 0);
      await tiny.raw.fill('junk', 8000, 500);
      expect(Number((await tiny.raw.stats()).evictions)).toBeGreaterThan(0);
      const c = sandbox(tiny.url, '|namespace=full|compression=none');
      expectSameObjects(buildThroughKiln(c, proj), want);
      const cTier = tierCounts(c, 'full');
      expect(cTier.corrupt + cTier.otherFormat).toBe(0);
      expect(cTier.misses).toBeGreaterThan(0);
    } finally {
      await tiny.stop();
    }
  });
});
