/**
 * memcached as a remote cache, over its binary protocol on one pipelined TCP connection (written
 * here over node:net: the protocol is a 24-byte header and five opcodes, and owning the socket is
 * what lets a request give up when its signal aborts; the npm clients speak the text protocol or
 * keep their own retry queues).
 *
 * An entry that fits in one item (the server's item_size_max, `-I`, less room for the item's
 * header) is one item. A larger one is split: chunk items `<key>#<nonce>#<i>` first, then a head
 * item under the entry's key that names the nonce, the chunk count, the length and the SHA-256 of
 * the whole. memcached evicts items one by one, so a get that finds a chunk missing, of the wrong
 * kind or length, or a whole that does not match the digest, reports a miss: never a wrong entry.
 * A fresh nonce per put means two puts of one entry never mix their chunks. Chunks orphaned by an
 * overwrite are left to expire or be evicted.
 *
 * One server per backend: several servers (consistent hashing) are out of scope.
 */
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import { KILN_ERR_CONFIG_INVALID } from '../../errors.js';
import type { BackendContext, BackendModule, EntryName, RemoteBackend } from './backend.js';
import { entryPath } from './backend.js';
import { abortable, withoutCredentials } from './options.js';

export interface MemcachedOptions {
  readonly url: string;
  readonly host: string;
  readonly port: number;
  /** Seconds an item lives; 0: until the server evicts it. */
  readonly ttl: number;
}

/** Past 30 days memcached reads an expiry as a unix time. */
const MAX_TTL = 30 * 24 * 3600;

function parseOptions(
  url: string,
  table: Readonly<Record<string, unknown>>,
  where: string,
): MemcachedOptions {
  let u: URL | undefined;
  try {
    u = new URL(url);
  } catch {}
  if (
    u?.protocol !== 'memcached:' ||
    u.hostname === '' ||
    u.username !== '' ||
    u.password !== '' ||
    (u.pathname !== '' && u.pathname !== '/') ||
    u.search !== '' ||
    u.hash !== ''
  ) {
    throw KILN_ERR_CONFIG_INVALID('url', where, 'memcached://host[:port] (one server, no credentials)');
  }
  // A TOML integer, or a string from KILN_REMOTE_STORAGE.
  const raw = table.ttl ?? 0;
  const ttl = typeof raw === 'string' && /^\d{1,10}$/.test(raw) ? Number(raw) : raw;
  if (typeof ttl !== 'number' || !Number.isInteger(ttl) || ttl < 0 || ttl > MAX_TTL) {
    throw KILN_ERR_CONFIG_INVALID('ttl', where, `whole seconds from 0 (no expiry) to ${MAX_TTL} (30 days)`);
  }
  return Object.freeze({
    url,
    host: u.hostname.replace(/^\[(.*)\]$/, '$1'),
    port: u.port === '' ? 11211 : Number(u.port),
    ttl,
  });
}

const Op = { GET: 0x00, SET: 0x01, DELETE: 0x04, STAT: 0x10, TOUCH: 0x1c } as const;
const Status = { OK: 0x00, NOT_FOUND: 0x01 } as const;
const STATUS_TEXT: Record<number, string> = {
  2: 'key exists',
  3: 'value too large',
  4: 'invalid arguments',
  5: 'item not stored',
  32: 'authentication required',
  129: 'unknown command',
  130: 'out of memory',
  133: 'busy',
  134: 'temporary failure',
};
/** Item flags, so that an item kiln did not write (or another kind of kiln item) is never taken for an entry. */
const Flags = { WHOLE: 0x6b6c6e31, HEAD: 0x6b6c6e48, CHUNK: 0x6b6c6e43 } as const;
const HEADER = 24;
/** memcached's largest item (-I 1024m) and a little: a broken server must not make the daemon allocate more. */
const MAX_BODY = 1024 ** 3 + 4096;
/**
 * Room kept in an item for memcached's item header (~50 bytes), the key (at most ~100 here) and
 * the CAS: 512 bytes, or half the item under a tiny `-I`.
 */
const itemRoom = (itemSizeMax: number) => itemSizeMax - Math.min(512, Math.floor(itemSizeMax / 2));
const DEFAULT_ITEM_SIZE_MAX = 1024 * 1024;
const HEAD_FORM = /^kiln-chunks 1 ([0-9a-f]{16}) (\d{1,6}) (\d{1,15}) ([0-9a-f]{64})$/;

interface Response {
  readonly status: number;
  readonly extras: Buffer;
  readonly key: Buffer;
  readonly value: Buffer;
}

interface Pending {
  resolve(r: Response): void;
  reject(err: Error): void;
  /** STAT answers with one response per statistic, then one with an empty key. */
  readonly stats?: Response[];
}

/** One socket, requests pipelined and matched to answers by their opaque. */
class Connection {
  readonly #socket: net.Socket;
  readonly #pending = new Map<number, Pending>();
  readonly #what: string;
  #opaque = 0;
  #head = Buffer.alloc(HEADER);
  #headFill = 0;
  #body: Buffer | undefined;
  #bodyFill = 0;
  closed = false;

  constructor(options: MemcachedOptions, connectTimeoutMs: number, what: string) {
    this.#what = what;
    this.#socket = net.connect({ host: options.host, port: options.port, noDelay: true });
    const timer = setTimeout(
      () => this.fail(new Error(`${what}: no connection after ${connectTimeoutMs} ms`)),
      connectTimeoutMs,
    );
    this.#socket.once('connect', () => clearTimeout(timer));
    this.#socket.on('data', (chunk: Buffer) => this.#read(chunk));
    this.#socket.on('error', (err) => this.fail(new Error(`${what}: ${err.message}`)));
    this.#socket.on('end', () => this.fail(new Error(`${what}: the connection closed`)));
    this.#socket.on('close', () => {
      clearTimeout(timer);
      this.fail(new Error(`${what}: the connection closed`));
    });
  }

  request(op: number, key: string, extras: Buffer, value: Buffer | undefined): Promise<Response> {
    if (this.closed) return Promise.reject(new Error(`${this.#what}: the connection closed`));
    this.#opaque = (this.#opaque + 1) >>> 0;
    const opaque = this.#opaque;
    const keyBytes = Buffer.from(key);
    const valueLength = value?.length ?? 0;
    const head = Buffer.alloc(HEADER + extras.length + keyBytes.length);
    head[0] = 0x80;
    head[1] = op;
    head.writeUInt16BE(keyBytes.length, 2);
    head[4] = extras.length;
    head.writeUInt32BE(extras.length + keyBytes.length + valueLength, 8);
    head.writeUInt32BE(opaque, 12);
    extras.copy(head, HEADER);
    keyBytes.copy(head, HEADER + extras.length);
    return new Promise<Response>((resolve, reject) => {
      this.#pending.set(opaque, { resolve, reject, ...(op === Op.STAT ? { stats: [] } : {}) });
      this.#socket.cork();
      this.#socket.write(head);
      if (value && value.length > 0) this.#socket.write(value);
      this.#socket.uncork();
    });
  }

  /** Closes the socket and fails every pending request with `err`. */
  fail(err: Error): void {
    if (!this.closed) {
      this.closed = true;
      this.#socket.destroy();
    }
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const p of pending) p.reject(err);
  }

  #read(chunk: Buffer): void {
    let off = 0;
    while (off < chunk.length && !this.closed) {
      if (this.#body === undefined) {
        const n = chunk.copy(this.#head, this.#headFill, off, off + HEADER - this.#headFill);
        off += n;
        this.#headFill += n;
        if (this.#headFill < HEADER) return;
        if (this.#head[0] !== 0x81) {
          this.fail(
            new Error(
              `${this.#what}: not a memcached binary protocol answer (magic 0x${this.#head[0]?.toString(16)})`,
            ),
          );
          return;
        }
        const length = this.#head.readUInt32BE(8);
        if (length > MAX_BODY) {
          this.fail(new Error(`${this.#what}: an answer of ${length} bytes, over the limit of ${MAX_BODY}`));
          return;
        }
        this.#body = Buffer.allocUnsafe(length);
        this.#bodyFill = 0;
        if (this.#body.length === 0) {
          this.#answer();
          continue;
        }
      }
      const n = chunk.copy(this.#body, this.#bodyFill, off, off + this.#body.length - this.#bodyFill);
      off += n;
      this.#bodyFill += n;
      if (this.#bodyFill === this.#body.length) this.#answer();
    }
  }

  #answer(): void {
    const head = this.#head;
    const body = this.#body as Buffer;
    this.#head = Buffer.alloc(HEADER);
    this.#headFill = 0;
    this.#body = undefined;
    const extrasLength = head[4] as number;
    const keyLength = head.readUInt16BE(2);
    const response: Response = {
      status: head.readUInt16BE(6),
      extras: body.subarray(0, extrasLength),
      key: body.subarray(extrasLength, extrasLength + keyLength),
      value: body.subarray(extrasLength + keyLength),
    };
    const opaque = head.readUInt32BE(12);
    const pending = this.#pending.get(opaque);
    if (!pending) return;
    if (pending.stats && response.status === Status.OK && response.key.length > 0) {
      pending.stats.push(response);
      return;
    }
    this.#pending.delete(opaque);
    pending.resolve(pending.stats ? { ...response, value: statsText(pending.stats) } : response);
  }
}

const statsText = (stats: readonly Response[]) =>
  Buffer.from(stats.map((s) => `${s.key.toString()} ${s.value.toString()}\n`).join(''));

const u32 = (...values: number[]) => {
  const b = Buffer.alloc(4 * values.length);
  for (const [i, v] of values.entries()) b.writeUInt32BE(v >>> 0, 4 * i);
  return b;
};
const sha256 = (data: Buffer | Buffer[]) => {
  const h = createHash('sha256');
  for (const d of Array.isArray(data) ? data : [data]) h.update(d);
  return h.digest('hex');
};

/**
 * The item key of an entry: `kiln:<namespace>/<kind>/<key>` when it is short printable ASCII,
 * else `kilnh:` and its SHA-256 (memcached keys are at most 250 bytes, without spaces or control
 * characters; chunk suffixes need room too).
 */
export function itemKey(name: EntryName): string {
  const plain = `kiln:${entryPath(name)}`;
  return plain.length <= 200 && /^[\x21-\x7e]+$/.test(plain) ? plain : `kilnh:${sha256(Buffer.from(plain))}`;
}

type Item = { flags: number; value: Buffer } | undefined;

class MemcachedBackend implements RemoteBackend {
  readonly #options: MemcachedOptions;
  readonly #context: BackendContext;
  readonly #what: string;
  #connection: Connection | undefined;
  #itemSizeMax: Promise<number> | undefined;
  #closed = false;

  constructor(options: MemcachedOptions, context: BackendContext) {
    this.#options = options;
    this.#context = context;
    this.#what = `memcached ${describe(options.url)}`;
  }

  get(name: EntryName, signal: AbortSignal): Promise<Buffer | undefined> {
    return this.#run(signal, async (c) => {
      const key = itemKey(name);
      const item = await this.#get(c, key);
      if (!item) return undefined;
      if (item.flags === Flags.WHOLE) return item.value;
      const head = item.flags === Flags.HEAD ? parseHead(item.value) : undefined;
      if (!head) return undefined;
      const chunks = await Promise.all(chunkKeys(key, head).map((k) => this.#get(c, k)));
      const values: Buffer[] = [];
      let length = 0;
      for (const chunk of chunks) {
        if (!chunk || chunk.flags !== Flags.CHUNK) return undefined;
        values.push(chunk.value);
        length += chunk.value.length;
      }
      if (length !== head.length || sha256(values) !== head.digest) return undefined;
      return Buffer.concat(values, length);
    });
  }

  put(name: EntryName, data: Buffer, signal: AbortSignal): Promise<void> {
    return this.#run(signal, async (c) => {
      const key = itemKey(name);
      const room = itemRoom(await this.#itemSizeLimit(c));
      if (data.length <= room) return this.#set(c, key, Flags.WHOLE, data);
      const head = { nonce: randomBytes(8).toString('hex'), count: Math.ceil(data.length / room) };
      await Promise.all(
        chunkKeys(key, head).map((k, i) =>
          this.#set(c, k, Flags.CHUNK, data.subarray(i * room, (i + 1) * room)),
        ),
      );
      // The head last: a reader that finds it finds the chunks (unless evicted since).
      const text = `kiln-chunks 1 ${head.nonce} ${head.count} ${data.length} ${sha256(data)}`;
      await this.#set(c, key, Flags.HEAD, Buffer.from(text));
    });
  }

  exists(name: EntryName, signal: AbortSignal): Promise<boolean> {
    return this.#run(signal, async (c) => {
      const key = itemKey(name);
      const item = await this.#get(c, key);
      if (!item) return false;
      if (item.flags === Flags.WHOLE) return true;
      const head = item.flags === Flags.HEAD ? parseHead(item.value) : undefined;
      if (!head) return false;
      // TOUCH answers without the value, and gives the chunks the head's expiry again.
      const extras = u32(this.#options.ttl);
      const touched = await Promise.all(
        chunkKeys(key, head).map((k) => c.request(Op.TOUCH, k, extras, undefined)),
      );
      return touched.every((r) => r.status === Status.OK);
    });
  }

  remove(name: EntryName, signal: AbortSignal): Promise<void> {
    return this.#run(signal, async (c) => {
      const key = itemKey(name);
      const item = await this.#get(c, key);
      await this.#delete(c, key);
      const head = item?.flags === Flags.HEAD ? parseHead(item.value) : undefined;
      if (head) await Promise.all(chunkKeys(key, head).map((k) => this.#delete(c, k)));
    });
  }

  /** The server's `bytes` statistic: every item it holds, not only kiln's. */
  size(signal: AbortSignal): Promise<number | undefined> {
    return this.#run(signal, async (c) => {
      const stats = await c.request(Op.STAT, '', Buffer.alloc(0), undefined);
      const m = /^bytes (\d+)$/m.exec(stats.value.toString());
      return m ? Number(m[1]) : undefined;
    });
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#connection?.fail(new Error(`${this.#what}: the backend is closed`));
    this.#connection = undefined;
  }

  /**
   * `work` on the connection (made when there is none or the last one failed). When the signal
   * aborts first the connection goes, with whatever else was pending on it: the server is hung or
   * too slow, and the next request reconnects.
   */
  #run<T>(signal: AbortSignal, work: (c: Connection) => Promise<T>): Promise<T> {
    if (this.#closed) return Promise.reject(new Error(`${this.#what}: the backend is closed`));
    if (signal.aborted) return Promise.reject(signal.reason);
    if (!this.#connection || this.#connection.closed) {
      this.#connection = new Connection(this.#options, this.#context.connectTimeoutMs, this.#what);
    }
    const connection = this.#connection;
    return abortable(work(connection), signal, () =>
      connection.fail(new Error(`${this.#what}: a request on this connection was aborted`)),
    );
  }

  async #get(c: Connection, key: string): Promise<Item> {
    const r = await c.request(Op.GET, key, Buffer.alloc(0), undefined);
    if (r.status === Status.NOT_FOUND) return undefined;
    this.#check(r, 'get');
    return { flags: r.extras.length >= 4 ? r.extras.readUInt32BE(0) : 0, value: r.value };
  }

  async #set(c: Connection, key: string, flags: number, value: Buffer): Promise<void> {
    const r = await c.request(Op.SET, key, u32(flags, this.#options.ttl), value);
    this.#check(r, `storing ${value.length} bytes`);
  }

  async #delete(c: Connection, key: string): Promise<void> {
    const r = await c.request(Op.DELETE, key, Buffer.alloc(0), undefined);
    if (r.status !== Status.NOT_FOUND) this.#check(r, 'delete');
  }

  #check(r: Response, what: string): void {
    if (r.status === Status.OK) return;
    const text = STATUS_TEXT[r.status] ?? `status 0x${r.status.toString(16)}`;
    throw new Error(
      `${this.#what}: ${what} failed: ${text}${r.value.length ? ` (${r.value.toString()})` : ''}`,
    );
  }

  /** item_size_max from `stats settings`, asked once; 1 MiB (memcached's default) when it will not say. */
  #itemSizeLimit(c: Connection): Promise<number> {
    if (!this.#itemSizeMax) {
      const asked = c.request(Op.STAT, 'settings', Buffer.alloc(0), undefined).then((r) => {
        const m = r.status === Status.OK ? /^item_size_max (\d+)$/m.exec(r.value.toString()) : null;
        return m ? Number(m[1]) : DEFAULT_ITEM_SIZE_MAX;
      });
      // Asked again on the next put when the connection failed before the answer.
      asked.catch(() => {
        if (this.#itemSizeMax === asked) this.#itemSizeMax = undefined;
      });
      this.#itemSizeMax = asked;
    }
    return this.#itemSizeMax;
  }
}

const chunkKeys = (key: string, head: { nonce: string; count: number }) =>
  Array.from({ length: head.count }, (_, i) => `${key}#${head.nonce}#${i}`);

function parseHead(
  value: Buffer,
): { nonce: string; count: number; length: number; digest: string } | undefined {
  const m = HEAD_FORM.exec(value.toString('latin1'));
  if (!m) return undefined;
  return { nonce: m[1] as string, count: Number(m[2]), length: Number(m[3]), digest: m[4] as string };
}

function describe(url: string): string {
  return withoutCredentials(url, '(invalid memcached URL)').replace(/\/$/, '');
}

export const memcachedBackend: BackendModule<MemcachedOptions> = {
  type: 'memcached',
  schemes: ['memcached'],
  keys: ['ttl'],
  parseOptions,
  describe,
  async create(options, context) {
    return new MemcachedBackend(options, context);
  },
};
