/**
 * Redis as a remote cache: one key per entry, `kiln:<namespace>/<kind>/<key>`, written with one
 * SET so readers see the old value or the new one. Eviction is the server's (maxmemory-policy
 * allkeys-lru) unless `ttl` gives each entry an expiry.
 *
 * The client is @redis/client (the official one, no dependencies), loaded in `create` only. It is
 * set up to fail rather than wait: no reconnect loop, no offline queue, and any request whose
 * signal aborts drops the connection, so a hung server holds nothing and the next request
 * reconnects (which the tier's backoff paces).
 */
import fs from 'node:fs';
import { isIP } from 'node:net';
import type { RedisClientType } from '@redis/client';
import { KILN_ERR_CONFIG_INVALID, KILN_ERR_STORAGE_DENIED, KILN_ERR_TLS_CERT } from '../../errors.js';
import type { BackendContext, BackendModule, EntryName, RemoteBackend } from './backend.js';
import { entryPath } from './backend.js';
import { abortable, withoutCredentials } from './options.js';

export interface RedisOptions {
  /** The URL as configured, for messages (describe() strips its credentials). */
  readonly url: string;
  readonly tls: boolean;
  readonly host: string;
  readonly port: number;
  /** A unix socket path (redis+unix://), instead of host and port. */
  readonly socketPath: string | undefined;
  readonly username: string | undefined;
  readonly password: string | undefined;
  readonly db: number;
  /** Seconds an entry lives (SET … EX); 0: until the server evicts it. */
  readonly ttl: number;
  /** The environment variable that holds the password, when it is not in the URL. */
  readonly passwordEnv: string | undefined;
  /** PEM bundle for a server whose certificate is not from a public CA (rediss:// only). */
  readonly caFile: string | undefined;
  readonly where: string;
}

/** A whole number of seconds, as a TOML integer or a KILN_REMOTE_STORAGE string. */
function seconds(v: unknown): number | undefined {
  const n = typeof v === 'string' && /^\d{1,10}$/.test(v) ? Number(v) : v;
  return typeof n === 'number' && Number.isSafeInteger(n) && n >= 0 ? n : undefined;
}

const URL_FORMS =
  'redis://[user:password@]host[:port][/db], rediss://… (TLS) or redis+unix:///path/to/redis.sock[?db=N]';
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

function parseUrl(url: string, where: string) {
  const bad = () => KILN_ERR_CONFIG_INVALID('url', where, URL_FORMS);
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw bad();
  }
  const scheme = u.protocol.slice(0, -1);
  const dbOf = (text: string) => {
    if (text === '') return 0;
    if (!/^\d{1,5}$/.test(text)) throw bad();
    return Number(text);
  };
  if (scheme === 'redis+unix') {
    const rest = [...u.searchParams.keys()].filter((k) => k !== 'db');
    if (u.host !== '' || u.username !== '' || u.password !== '' || u.pathname.length < 2 || rest.length > 0) {
      throw bad();
    }
    return {
      tls: false,
      host: '',
      port: 0,
      socketPath: decodeURIComponent(u.pathname),
      username: undefined,
      password: undefined,
      db: dbOf(u.searchParams.get('db') ?? ''),
    };
  }
  if ((scheme !== 'redis' && scheme !== 'rediss') || u.hostname === '' || u.search !== '' || u.hash !== '') {
    throw bad();
  }
  return {
    tls: scheme === 'rediss',
    host: u.hostname.replace(/^\[(.*)\]$/, '$1'),
    port: u.port === '' ? 6379 : Number(u.port),
    socketPath: undefined,
    username: u.username === '' ? undefined : decodeURIComponent(u.username),
    password: u.password === '' ? undefined : decodeURIComponent(u.password),
    db: dbOf(u.pathname.replace(/^\//, '')),
  };
}

function parseOptions(url: string, table: Readonly<Record<string, unknown>>, where: string): RedisOptions {
  const parsed = parseUrl(url, where);
  const ttl = seconds(table.ttl ?? 0);
  if (ttl === undefined)
    throw KILN_ERR_CONFIG_INVALID('ttl', where, 'whole seconds, 0 or more (0: no expiry)');
  const passwordEnv = table.password_env;
  if (passwordEnv !== undefined && (typeof passwordEnv !== 'string' || !ENV_NAME.test(passwordEnv))) {
    throw KILN_ERR_CONFIG_INVALID(
      'password_env',
      where,
      'the name of an environment variable, e.g. "KILN_REDIS_PASSWORD"',
    );
  }
  if (passwordEnv !== undefined && parsed.password !== undefined) {
    throw KILN_ERR_CONFIG_INVALID(
      'password_env',
      where,
      'either a password in the URL or password_env, not both',
    );
  }
  const caFile = table.ca_file;
  if (caFile !== undefined && (typeof caFile !== 'string' || !parsed.tls || !fs.existsSync(caFile))) {
    throw KILN_ERR_CONFIG_INVALID(
      'ca_file',
      where,
      'the path of a PEM file that exists, with a rediss:// URL',
    );
  }
  return Object.freeze({ url, ...parsed, ttl, passwordEnv, caFile, where });
}

function describe(url: string): string {
  return withoutCredentials(url, '(invalid redis URL)');
}

/** Errors from the server that mean the credentials are wrong or missing. */
const AUTH_REPLY = /^(WRONGPASS|NOAUTH|NOPERM)\b|\bAUTH\b.*without any password configured/;

type Client = RedisClientType;

class RedisBackend implements RemoteBackend {
  readonly #options: RedisOptions;
  readonly #context: BackendContext;
  readonly #module: typeof import('@redis/client');
  readonly #password: string | undefined;
  readonly #ca: string | undefined;
  #client: { client: Client; ready: Promise<Client> } | undefined;
  #closed = false;

  constructor(options: RedisOptions, context: BackendContext, module: typeof import('@redis/client')) {
    this.#options = options;
    this.#context = context;
    this.#module = module;
    this.#password = options.password;
    if (options.passwordEnv !== undefined) {
      this.#password = context.env[options.passwordEnv];
      if (!this.#password) {
        throw KILN_ERR_CONFIG_INVALID(
          'password_env',
          options.where,
          `a variable that is set (${options.passwordEnv} is empty or unset)`,
        );
      }
    }
    if (options.caFile !== undefined) {
      try {
        this.#ca = fs.readFileSync(options.caFile, 'utf8');
      } catch (err) {
        throw KILN_ERR_TLS_CERT(`ca_file in ${options.where}`, (err as Error).message);
      }
    }
  }

  async get(name: EntryName, signal: AbortSignal): Promise<Buffer | undefined> {
    const value = await this.#run(signal, (c) => c.get(key(name)));
    return value === null ? undefined : (value as unknown as Buffer);
  }

  async put(name: EntryName, data: Buffer, signal: AbortSignal): Promise<void> {
    const ttl = this.#options.ttl;
    await this.#run(signal, (c) =>
      ttl > 0 ? c.set(key(name), data, { expiration: { type: 'EX', value: ttl } }) : c.set(key(name), data),
    );
  }

  async exists(name: EntryName, signal: AbortSignal): Promise<boolean> {
    return (await this.#run(signal, (c) => c.exists(key(name)))) > 0;
  }

  async remove(name: EntryName, signal: AbortSignal): Promise<void> {
    await this.#run(signal, (c) => c.del(key(name)));
  }

  /** The server's used_memory (INFO memory): every key it holds, not only kiln's. */
  async size(signal: AbortSignal): Promise<number | undefined> {
    const info = await this.#run(signal, (c) => c.info('memory'));
    const m = /^used_memory:(\d+)/m.exec(String(info));
    return m ? Number(m[1]) : undefined;
  }

  async close(): Promise<void> {
    this.#closed = true;
    const current = this.#client;
    this.#client = undefined;
    if (!current) return;
    // A graceful close waits for pending replies, which a hung server never sends.
    const timer = setTimeout(() => current.client.destroy(), this.#context.connectTimeoutMs);
    try {
      await current.client.close();
    } catch {
      current.client.destroy();
    } finally {
      clearTimeout(timer);
    }
  }

  async #run<T>(signal: AbortSignal, op: (c: Client) => Promise<T>): Promise<T> {
    signal.throwIfAborted();
    const { client, ready } = this.#connected();
    const typed = await abortable(ready, signal, () => this.#drop(client));
    return abortable(op(typed.withAbortSignal(signal) as Client), signal, () => this.#drop(client)).catch(
      (err) => {
        throw this.#explain(err);
      },
    );
  }

  /** The client, connecting first when there is none or the last one closed. */
  #connected(): { client: Client; ready: Promise<Client> } {
    if (this.#closed) throw new Error('the redis backend is closed');
    if (this.#client?.client.isOpen === false) this.#client = undefined;
    if (this.#client) return this.#client;
    const o = this.#options;
    const common = { connectTimeout: this.#context.connectTimeoutMs, reconnectStrategy: false as const };
    const socket = o.socketPath
      ? { ...common, path: o.socketPath, tls: false as const }
      : o.tls
        ? {
            ...common,
            host: o.host,
            port: o.port,
            tls: true as const,
            ...(isIP(o.host) ? {} : { servername: o.host }),
            ...(this.#ca ? { ca: this.#ca } : {}),
          }
        : { ...common, host: o.host, port: o.port };
    const client = this.#module.createClient({
      socket,
      username: o.username,
      password: this.#password,
      database: o.db,
      disableOfflineQueue: true,
      disableClientInfo: true,
    }) as unknown as Client;
    client.on('error', (err: Error) => this.#context.log.debug(`redis ${describe(o.url)}: ${err.message}`));
    const typed = client.withTypeMapping({
      [this.#module.RESP_TYPES.BLOB_STRING]: Buffer,
    }) as unknown as Client;
    const entry = {
      client,
      ready: client.connect().then(
        () => typed,
        (err: unknown) => {
          this.#drop(client);
          throw this.#explain(err);
        },
      ),
    };
    // Nobody may be waiting when it fails (the signal aborted first).
    entry.ready.catch(() => {});
    this.#client = entry;
    return entry;
  }

  #drop(client: Client): void {
    if (this.#client?.client === client) this.#client = undefined;
    try {
      client.destroy();
    } catch {
      // Already closed.
    }
  }

  #explain(err: unknown): unknown {
    const message = err instanceof Error ? err.message : String(err);
    if (AUTH_REPLY.test(message)) {
      const how = this.#options.passwordEnv
        ? `the password in environment variable ${this.#options.passwordEnv}`
        : 'the user and password in the URL';
      return KILN_ERR_STORAGE_DENIED(
        `the remote cache ${describe(this.#options.url)}`,
        `${message} (check ${how})`,
      );
    }
    return err;
  }
}

const key = (name: EntryName) => `kiln:${entryPath(name)}`;

export const redisBackend: BackendModule<RedisOptions> = {
  type: 'redis',
  schemes: ['redis', 'rediss', 'redis+unix'],
  keys: ['ttl', 'password_env', 'ca_file'],
  parseOptions,
  describe,
  async create(options, context) {
    const module = await import('@redis/client');
    return new RedisBackend(options, context, module);
  },
};
