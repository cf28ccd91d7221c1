/**
 * A real memcached for a test: 127.0.0.1 on a free port (no UDP), its memory (`-m`) and item size
 * limit (`-I`) as asked. `raw` speaks the text protocol to it, to look at or tamper with items
 * behind the backend's back.
 */
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { have } from '../prereq.js';
import { freePort } from './free-port.js';
import { type ServerProcess, startProcess, waitReady } from './process.js';

export interface MemcachedServerOptions {
  /** Megabytes of item memory (-m), default 64. */
  readonly memoryMb?: number;
  /** Item size limit (-I), default "1m"; below 1m memcached also needs `-o slab_chunk_max`. */
  readonly itemSize?: string;
  /** More arguments, e.g. ['-o', 'slab_chunk_max=512']. */
  readonly args?: readonly string[];
}

export interface RawMemcached {
  get(key: string): Promise<{ flags: number; data: Buffer } | undefined>;
  set(key: string, flags: number, data: Buffer): Promise<void>;
  delete(key: string): Promise<void>;
  /** Every key the server holds (`lru_crawler metadump hash`: the hash table, so items the LRU maintainer moves meanwhile are not missed, as with `metadump all`). */
  keys(): Promise<string[]>;
  /** Seconds left before the item expires, -1 for never (metadump); undefined when absent. */
  expiry(key: string): Promise<number | undefined>;
  stats(which?: string): Promise<Record<string, string>>;
  /** Stores `count` items `<prefix><i>` of `bytes` random bytes each, on one connection. */
  fill(prefix: string, count: number, bytes: number): Promise<void>;
}

export interface MemcachedServer {
  readonly port: number;
  readonly url: string;
  readonly raw: RawMemcached;
  /** SIGKILL, as a crash. */
  kill(): Promise<void>;
  stop(): Promise<void>;
}

/** Whether memcached can be used; under CI=true its absence throws (see prereq.ts). */
export const haveMemcached = (): boolean => have('memcached');

export async function startMemcached(options: MemcachedServerOptions = {}): Promise<MemcachedServer> {
  let lastError: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const args = ['-l', '127.0.0.1', '-p', String(port), '-U', '0', '-t', '2'];
    args.push('-m', String(options.memoryMb ?? 64), '-I', options.itemSize ?? '1m', ...(options.args ?? []));
    // memcached refuses to run as root without being told which user to be.
    if (process.getuid?.() === 0) args.push('-u', 'root');
    const proc: ServerProcess = startProcess('memcached', args);
    const raw = rawClient(port);
    try {
      await waitReady(proc, 'memcached', async () => (await raw.stats()).pid !== undefined);
      return {
        port,
        url: `memcached://127.0.0.1:${port}`,
        raw,
        kill: () => proc.kill('SIGKILL'),
        stop: () => proc.kill('SIGTERM'),
      };
    } catch (err) {
      lastError = err;
      await proc.kill('SIGKILL');
      if (!/Address already in use|failed to listen/.test(proc.output())) break;
    }
  }
  throw lastError;
}

/** Sends `request` on a new connection and reads until `done` says the answer is whole. */
function exchange(port: number, request: Buffer, done: (answer: Buffer) => boolean): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    const parts: Buffer[] = [];
    socket.setTimeout(5000, () => socket.destroy(new Error('memcached did not answer in 5 s')));
    socket.on('error', reject);
    socket.on('data', (d: Buffer) => {
      parts.push(d);
      const answer = Buffer.concat(parts);
      if (done(answer)) {
        socket.destroy();
        resolve(answer);
      }
    });
    socket.write(request);
  });
}

const endsWith = (text: string) => (b: Buffer) => b.subarray(-text.length).toString('latin1') === text;

function rawClient(port: number): RawMemcached {
  const line = (text: string, done: (b: Buffer) => boolean) =>
    exchange(port, Buffer.from(`${text}\r\n`), done);
  return {
    async get(key) {
      const value = /^VALUE \S+ (\d+) (\d+)\r\n/;
      const whole = (b: Buffer) => {
        const m = value.exec(b.subarray(0, 400).toString('latin1'));
        return m ? b.length >= m[0].length + Number(m[2]) + '\r\nEND\r\n'.length : b.toString() === 'END\r\n';
      };
      const answer = await line(`get ${key}`, whole);
      const m = value.exec(answer.subarray(0, 400).toString('latin1'));
      if (!m) return undefined;
      const start = m[0].length;
      return { flags: Number(m[1]), data: answer.subarray(start, start + Number(m[2])) };
    },
    async set(key, flags, data) {
      const request = Buffer.concat([
        Buffer.from(`set ${key} ${flags} 0 ${data.length}\r\n`),
        data,
        Buffer.from('\r\n'),
      ]);
      const answer = (await exchange(port, request, endsWith('\r\n'))).toString();
      if (answer !== 'STORED\r\n') throw new Error(`memcached set ${key}: ${answer.trim()}`);
    },
    async delete(key) {
      const answer = (await line(`delete ${key}`, endsWith('\r\n'))).toString();
      if (answer !== 'DELETED\r\n' && answer !== 'NOT_FOUND\r\n')
        throw new Error(`memcached delete ${key}: ${answer.trim()}`);
    },
    async keys() {
      const answer = (await line('lru_crawler metadump hash', endsWith('END\r\n'))).toString();
      return [...answer.matchAll(/^key=(\S+)/gm)].map((m) => decodeURIComponent(m[1] as string));
    },
    async expiry(key) {
      const answer = (await line(`lru_crawler metadump hash`, endsWith('END\r\n'))).toString();
      for (const m of answer.matchAll(/^key=(\S+) exp=(-?\d+)/gm)) {
        if (decodeURIComponent(m[1] as string) === key) {
          const exp = Number(m[2]);
          return exp === -1 ? -1 : exp - Math.floor(Date.now() / 1000);
        }
      }
      return undefined;
    },
    async fill(prefix, count, bytes) {
      const parts: Buffer[] = [];
      for (let i = 0; i < count; i++) {
        parts.push(
          Buffer.from(`set ${prefix}${i} 0 0 ${bytes} noreply\r\n`),
          randomBytes(bytes),
          Buffer.from('\r\n'),
        );
      }
      // The meta no-op answers once everything before it is done.
      parts.push(Buffer.from('mn\r\n'));
      await exchange(port, Buffer.concat(parts), endsWith('MN\r\n'));
    },
    async stats(which) {
      const answer = (await line(which ? `stats ${which}` : 'stats', endsWith('END\r\n'))).toString();
      return Object.fromEntries([...answer.matchAll(/^STAT (\S+) (.*?)\r$/gm)].map((m) => [m[1], m[2]]));
    },
  };
}
