/**
 * The checks every remote cache backend must pass against its real server: what the tier relies on.
 * A backend's test file starts the server, then calls `backendConformance` with a factory.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import type { EntryName, RemoteBackend } from '../../core/dist/cache/remote/backend.js';

export interface ConformanceOptions {
  /** A backend for the running server, under `namespace`. */
  make(): Promise<RemoteBackend>;
  /** A backend pointed at a server that accepts connections and never answers (see `silentServer`). */
  makeHanging?(): Promise<RemoteBackend>;
  /** Largest entry the backend must round-trip (default 8 MiB). */
  largeBytes?: number;
}

const name = (key: string, kind: 'r' | 'm' = 'r', namespace = 'conf'): EntryName => ({
  namespace,
  kind,
  key,
});
const signal = () => AbortSignal.timeout(10_000);
const hex = () => randomBytes(32).toString('hex');

export function backendConformance(label: string, opts: ConformanceOptions): void {
  describe(`${label}: backend conformance`, () => {
    const made: RemoteBackend[] = [];
    const make = async () => {
      const b = await opts.make();
      made.push(b);
      return b;
    };
    afterAll(async () => {
      for (const b of made) await b.close();
    });

    it('a missing entry is undefined, not an error', async () => {
      const b = await make();
      const key = hex();
      expect(await b.get(name(key), signal())).toBeUndefined();
      expect(await b.exists(name(key), signal())).toBe(false);
    });

    it('round-trips every byte value, exists, overwrites and removes', async () => {
      const b = await make();
      const key = hex();
      const data = Buffer.alloc(70_000);
      for (let i = 0; i < data.length; i++) data[i] = (i * 7919) & 0xff;
      await b.put(name(key), data, signal());
      expect((await b.get(name(key), signal()))?.equals(data)).toBe(true);
      expect(await b.exists(name(key), signal())).toBe(true);
      const second = randomBytes(1000);
      await b.put(name(key), second, signal());
      expect((await b.get(name(key), signal()))?.equals(second)).toBe(true);
      await b.remove(name(key), signal());
      expect(await b.get(name(key), signal())).toBeUndefined();
      expect(await b.exists(name(key), signal())).toBe(false);
      // Removing what is absent is fine.
      await b.remove(name(key), signal());
    });

    it('keeps kinds and namespaces apart', async () => {
      const b = await make();
      const key = hex();
      await b.put(name(key, 'r', 'one'), Buffer.from('result in one'), signal());
      await b.put(name(key, 'm', 'one'), Buffer.from('manifest in one'), signal());
      await b.put(name(key, 'r', 'two'), Buffer.from('result in two'), signal());
      expect((await b.get(name(key, 'r', 'one'), signal()))?.toString()).toBe('result in one');
      expect((await b.get(name(key, 'm', 'one'), signal()))?.toString()).toBe('manifest in one');
      expect((await b.get(name(key, 'r', 'two'), signal()))?.toString()).toBe('result in two');
      expect(await b.get(name(key, 'm', 'two'), signal())).toBeUndefined();
      expect(await b.get(name(key, 'r', ''), signal())).toBeUndefined();
    });

    it('round-trips a large entry', async () => {
      const b = await make();
      const key = hex();
      const data = randomBytes(opts.largeBytes ?? 8 * 1024 * 1024);
      await b.put(name(key), data, signal());
      const back = await b.get(name(key), signal());
      expect(back?.length).toBe(data.length);
      expect(back?.equals(data)).toBe(true);
    });

    it('serves 50 concurrent gets and puts', async () => {
      const b = await make();
      const keys = Array.from({ length: 50 }, hex);
      await Promise.all(keys.map((k) => b.put(name(k), Buffer.from(k), signal())));
      const back = await Promise.all(keys.map((k) => b.get(name(k), signal())));
      expect(back.map((d) => d?.toString())).toEqual(keys);
    });

    if (opts.makeHanging) {
      it('gives up when the signal aborts on a server that never answers', async () => {
        const b = await opts.makeHanging!();
        made.push(b);
        const started = Date.now();
        await expect(b.get(name(hex()), AbortSignal.timeout(300))).rejects.toThrow();
        await expect(b.put(name(hex()), Buffer.from('x'), AbortSignal.timeout(300))).rejects.toThrow();
        expect(Date.now() - started).toBeLessThan(3000);
      });
    }
  });
}
