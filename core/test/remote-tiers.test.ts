/**
 * The remote tier machinery without a server: config parsing, the frame every remote entry
 * travels in, and the tier's deadline and backoff rules, counted exactly. The backends themselves
 * are tested against real servers in test/remote-cache/.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { RemoteBackend } from '../src/cache/remote/backend.js';
import { codecAvailable, decodeFrame, encodeFrame, FRAME_FORMAT } from '../src/cache/remote/frame.js';
import { RemoteTier } from '../src/cache/remote/tier.js';
import { parseTier } from '../src/cache/remote/tier-config.js';
import { loadClientConfig } from '../src/config.js';
import { silentLogger } from '../src/log.js';
import { Stats } from '../src/stats/stats.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-tiers-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
const write = (name: string, text: string) => {
  const file = path.join(dir, name);
  fs.writeFileSync(file, text);
  return file;
};

describe('[[cache.remote]] and KILN_REMOTE_STORAGE', () => {
  it('reads tiers in order, with defaults, the type from the URL scheme and the password kept out of the label', () => {
    const file = write(
      'tiers.toml',
      `[[cache.remote]]
url = "http://user:pw@127.0.0.1:8080/kiln"
namespace = "proj-a"
read_only = true

[[cache.remote]]
type = "http"
url = "https://cache.example.com/"
operation_timeout_ms = 2500
compression = "none"
write_errors = "disable"
`,
    );
    const c = loadClientConfig({ KILN_CONFIG: file });
    expect(c.remotes.map((t) => [t.type, t.label, t.readOnly, t.namespace])).toEqual([
      ['http', 'http://127.0.0.1:8080/kiln (namespace proj-a)', true, 'proj-a'],
      ['http', 'https://cache.example.com/', false, ''],
    ]);
    expect(c.remotes[0]).toMatchObject({
      connectTimeoutMs: 100,
      operationTimeoutMs: 5000,
      compression: 'brotli',
    });
    expect(c.remotes[1]).toMatchObject({
      operationTimeoutMs: 2500,
      compression: 'none',
      writeErrors: 'disable',
    });
    expect(c.origins['cache.remote']).toBe(file);
  });

  it('takes KILN_REMOTE_STORAGE over the file, with |key=value attributes, and KILN_REMOTE_READ_ONLY', () => {
    const file = write('env.toml', '[[cache.remote]]\nurl = "http://127.0.0.1:1/file"\n');
    const c = loadClientConfig({
      KILN_CONFIG: file,
      KILN_REMOTE_STORAGE: 'http://127.0.0.1:2/a|namespace=ci|connect_timeout_ms=50  https://h/b',
      KILN_REMOTE_READ_ONLY: '1',
    });
    expect(c.remotes.map((t) => [t.label, t.readOnly, t.connectTimeoutMs])).toEqual([
      ['http://127.0.0.1:2/a (namespace ci)', true, 50],
      ['https://h/b', true, 100],
    ]);
    expect(c.origins['cache.remote']).toBe('environment variable KILN_REMOTE_STORAGE');
  });

  it.each([
    [
      '[[cache.remote]]\nurl = "ftp://x/"\n',
      /invalid value for "url".*a URL whose scheme names a backend \(redis, rediss.*, http, https, s3, azure\)/,
    ],
    [
      '[[cache.remote]]\nurl = "http://x/"\nbogus = 1\n',
      /unknown config key "bogus" in .*\[\[cache.remote\]\] #1 \(known keys: type, url, read_only/,
    ],
    ['[[cache.remote]]\nnamespace = "a"\n', /"url" is missing from .*\[\[cache.remote\]\] #1/],
    ['[[cache.remote]]\nurl = "http://x/"\nread_only = "yes"\n', /"read_only".*true or false/],
    ['[[cache.remote]]\nurl = "http://x/"\nnamespace = "a/b"\n', /"namespace".*letters, digits/],
    [
      '[[cache.remote]]\nurl = "http://x/"\noperation_timeout_ms = 0\n',
      /"operation_timeout_ms".*milliseconds/,
    ],
    ['[[cache.remote]]\nurl = "http://x/"\nwrite_errors = "fail"\n', /"write_errors".*"ignore" or "disable"/],
    [
      '[[cache.remote]]\ntype = "ftp"\nurl = "http://x/"\n',
      /"type".*one of redis, memcached, http, s3, azure/,
    ],
    ['[cache]\nremotes = []\n', /unknown config key "remotes".*known keys: remote/],
    ['[[cache.remote]]\nurl = "http://x/"\nlayout = "flat"\n', /"layout".*"kiln" or "bazel"/],
  ])('refuses %j with a message naming the key', (text, message) => {
    const file = write('bad.toml', text);
    expect(() => loadClientConfig({ KILN_CONFIG: file })).toThrow(message);
  });

  it('refuses zstd where this Node has no zstd, naming the version', () => {
    const parse = () => parseTier({ url: 'http://x/', compression: 'zstd' }, 'here');
    if (codecAvailable('zstd')) expect(parse().compression).toBe('zstd');
    else expect(parse).toThrow(/zstd needs Node 22.15 or later; this is v/);
  });

  it('refuses a malformed attribute in KILN_REMOTE_STORAGE', () => {
    expect(() => loadClientConfig({ HOME: dir, KILN_REMOTE_STORAGE: 'http://x/|readonly' })).toThrow(
      /KILN_REMOTE_STORAGE.*URL\|key=value/,
    );
  });
});

describe('remote frames', () => {
  const data = Buffer.from('an object file '.repeat(2000));

  it.each(['none', 'brotli', 'deflate'] as const)('round-trips with %s', async (codec) => {
    const frame = await encodeFrame(data, codec);
    expect(await decodeFrame(frame)).toEqual(data);
    if (codec !== 'none') expect(frame.length).toBeLessThan(data.length / 10);
  });

  it('reports a flipped byte, a truncation, another format and a hostile length, never returning data', async () => {
    const frame = await encodeFrame(data, 'brotli');
    const flipped = Buffer.from(frame);
    flipped[flipped.length - 5]! ^= 1;
    expect(await decodeFrame(flipped)).toBe('corrupt');
    expect(await decodeFrame(frame.subarray(0, frame.length - 10))).toBe('corrupt');
    const plain = await encodeFrame(data, 'none');
    const sumFlipped = Buffer.from(plain);
    sumFlipped[100]! ^= 1;
    expect(await decodeFrame(sumFlipped)).toBe('corrupt');
    const other = Buffer.from(frame);
    other[4] = FRAME_FORMAT + 1;
    expect(await decodeFrame(other)).toBe('format');
    const huge = Buffer.from(frame);
    huge.writeUInt32LE(0xffffffff, 6);
    expect(await decodeFrame(huge)).toBe('corrupt');
    expect(await decodeFrame(Buffer.from('KLNE not a frame'))).toBe('corrupt');
  });
});

/** A backend whose every call fails, counting the calls that reached it (no server can do this on cue). */
function failingBackend(calls: { n: number }): RemoteBackend {
  const fail = async () => {
    calls.n++;
    throw new Error('connection refused');
  };
  return { get: fail, put: fail, exists: fail, remove: fail, close: async () => {} };
}

describe('RemoteTier deadlines and backoff', () => {
  const tierWith = (backend: RemoteBackend, stats: Stats, extra: Record<string, unknown> = {}) => {
    const config = parseTier({ url: 'http://127.0.0.1:9/', ...extra }, 'test');
    const module = { ...config.module, create: async () => backend };
    return new RemoteTier({ ...config, module }, stats, silentLogger, {});
  };

  it('after a failure, skips the tier while it pauses: the server sees one call, not twenty', async () => {
    const calls = { n: 0 };
    const stats = new Stats(dir);
    const tier = tierWith(failingBackend(calls), stats);
    for (let i = 0; i < 20; i++) expect(await tier.get('r', `k${i}`)).toBeUndefined();
    expect(calls.n).toBe(1);
    const c = stats.pending.tiers[tier.label]!;
    expect(c.errors).toBe(1);
    expect(c.skipped).toBe(19);
    expect(c.misses).toBe(0);
  });

  it('after the pause, one probe goes to the server; when it answers, the tier is used again', async () => {
    const calls = { n: 0 };
    let up = false;
    const backend: RemoteBackend = {
      get: async () => {
        calls.n++;
        if (!up) throw new Error('connection refused');
        return undefined;
      },
      put: async () => {},
      exists: async () => false,
      remove: async () => {},
      close: async () => {},
    };
    const stats = new Stats(dir);
    const tier = tierWith(backend, stats);
    await tier.get('r', 'a');
    up = true;
    await tier.get('r', 'b');
    expect(calls.n).toBe(1);
    await new Promise((r) => setTimeout(r, 1100));
    // Two lookups at once when the pause is over: one probes, the other is skipped.
    await Promise.all([tier.get('r', 'c'), tier.get('r', 'd')]);
    expect(calls.n).toBe(2);
    for (const k of ['e', 'f', 'g']) await tier.get('r', k);
    expect(calls.n).toBe(5);
    const c = stats.pending.tiers[tier.label]!;
    expect([c.errors, c.skipped, c.misses]).toEqual([1, 2, 4]);
  });

  it('cuts an operation that never settles at operation_timeout_ms, even when the backend ignores the signal', async () => {
    const stats = new Stats(dir);
    const never: RemoteBackend = {
      get: () => new Promise(() => {}),
      put: () => new Promise(() => {}),
      exists: () => new Promise(() => {}),
      remove: () => new Promise(() => {}),
      close: async () => {},
    };
    const tier = tierWith(never, stats, { operation_timeout_ms: 150 });
    const started = Date.now();
    expect(await tier.get('r', 'k')).toBeUndefined();
    expect(Date.now() - started).toBeLessThan(1000);
    expect(stats.pending.tiers[tier.label]!.timeouts).toBe(1);
  });

  it('with write_errors = "disable", stops writing after a failed write; "ignore" tries again after the pause', async () => {
    for (const [policy, writable] of [
      ['disable', false],
      ['ignore', true],
    ] as const) {
      const calls = { n: 0 };
      const stats = new Stats(dir);
      const tier = tierWith(failingBackend(calls), stats, { write_errors: policy });
      tier.put('r', 'k', Buffer.from('x'));
      await tier.flush(2000);
      expect(calls.n).toBe(1);
      expect(tier.writable).toBe(writable);
    }
  });

  it('a read-only tier never calls put or remove', async () => {
    const calls = { n: 0 };
    const tier = tierWith(failingBackend(calls), new Stats(dir), { read_only: true });
    tier.put('r', 'k', Buffer.from('x'));
    tier.remove('r', 'k');
    await tier.flush(1000);
    expect(calls.n).toBe(0);
  });
});
