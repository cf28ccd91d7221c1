/** The memcached backend against a real memcached: conformance, then chunking, eviction and tampering. */
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EntryName, RemoteBackend } from '../../core/dist/cache/remote/backend.js';
import { itemKey, type MemcachedOptions, memcachedBackend } from '../../core/dist/cache/remote/memcached.js';
import { backendByScheme, backendByType } from '../../core/dist/cache/remote/registry.js';
import { silentLogger } from '../../core/dist/log.js';
import { backendConformance } from '../helpers/remote-backend-kit.js';
import { haveMemcached, type MemcachedServer, startMemcached } from '../helpers/servers/memcached.js';
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
