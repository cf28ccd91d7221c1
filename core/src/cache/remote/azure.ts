/**
 * Azure Blob Storage as a remote cache tier: `azure://CONTAINER/PREFIX`; an entry is the block blob
 * `PREFIX/<namespace>/<kind>/<key>`.
 *
 * Four REST calls (Put Blob, Get Blob, Get Blob Properties, Delete Blob) signed with SharedKey or
 * carrying a SAS, over node:http(s): no client library. @azure/storage-blob needs Node 22 since
 * 12.33 (kiln runs on 20), brings 13 packages and ~38 MB, and takes ~170 ms to import, for what
 * is here ~100 lines. What it would add, Microsoft Entra ID (OAuth) sign-in, needs @azure/identity
 * on top; a SAS covers the same ground for a cache.
 */
import { createHmac } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import {
  KILN_ERR_CONFIG_INVALID,
  KILN_ERR_STORAGE_CREDENTIALS,
  KILN_ERR_STORAGE_DENIED,
  KILN_ERR_STORAGE_NO_CONTAINER,
  KILN_ERR_STORAGE_REMOTE,
  type KilnError,
} from '../../errors.js';
import type { BackendContext, BackendModule, EntryName, RemoteBackend } from './backend.js';
import { entryPath } from './backend.js';
import { bucketUrl, optEnvName, optString, withoutCredentials } from './options.js';

export interface AzureOptions {
  readonly container: string;
  /** Without leading or trailing slashes; '' for the container's root. */
  readonly prefix: string;
  /** https://ACCOUNT.blob.core.windows.net, or an emulator's http://HOST:PORT/ACCOUNT. */
  readonly accountUrl?: string;
  /** The variable holding a connection string (when there is no account_url). */
  readonly connectionStringEnv: string;
  /** The variable holding a SAS token (with account_url). */
  readonly sasTokenEnv?: string;
  /** The variable holding the account key (with account_url). */
  readonly accountKeyEnv?: string;
  /** Anonymous requests, for a container with public read access. */
  readonly noCredentials: boolean;
}

const KEYS = [
  'account_url',
  'connection_string_env',
  'sas_token_env',
  'account_key_env',
  'no_credentials',
] as const;

/** The service version the requests speak: Put Blob of up to 5000 MiB in one request. */
const API_VERSION = '2021-12-02';
/** Azurite's development account (UseDevelopmentStorage=true): published in Microsoft's docs, not a secret. */
const DEV_ACCOUNT = 'devstoreaccount1';
const DEV_KEY = 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';

/** How long an idle kept-alive connection is kept. */
const IDLE_MS = 4000;

/** How requests are authorized, once the environment has been read. */
type Auth =
  | { readonly kind: 'key'; readonly account: string; readonly key: Buffer }
  | { readonly kind: 'sas'; readonly token: string }
  | { readonly kind: 'anonymous' }
  | { readonly kind: 'missing'; readonly detail: string };

function parseOptions(url: string, table: Readonly<Record<string, unknown>>, where: string): AzureOptions {
  const expectedUrl = 'azure://CONTAINER or azure://CONTAINER/PREFIX, without credentials, port or query';
  const { name: container, prefix } = bucketUrl(url, 'azure:', where, expectedUrl);
  if (!/^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}$/.test(container)) {
    throw KILN_ERR_CONFIG_INVALID(
      'url',
      where,
      `${expectedUrl} (a container name: 3 to 63 lowercase letters, digits and single hyphens)`,
    );
  }

  const accountUrl = optString(table, 'account_url', where, 'an http:// or https:// URL');
  if (accountUrl !== undefined) {
    let a: URL | undefined;
    try {
      a = new URL(accountUrl);
    } catch {
      a = undefined;
    }
    if (!a || (a.protocol !== 'http:' && a.protocol !== 'https:') || a.username || a.search || a.hash) {
      throw KILN_ERR_CONFIG_INVALID(
        'account_url',
        where,
        'an http:// or https:// URL without credentials or query (put a SAS token in the variable sas_token_env names)',
      );
    }
  }
  const connectionStringEnv = optEnvName(table, 'connection_string_env', where);
  const sasTokenEnv = optEnvName(table, 'sas_token_env', where);
  const accountKeyEnv = optEnvName(table, 'account_key_env', where);
  const v = table.no_credentials;
  if (v !== undefined && typeof v !== 'boolean' && !['true', 'false', '1', '0'].includes(String(v))) {
    throw KILN_ERR_CONFIG_INVALID('no_credentials', where, 'true or false');
  }
  const noCredentials = v === true || v === 'true' || v === '1';
  if (accountUrl === undefined && (sasTokenEnv || accountKeyEnv || noCredentials)) {
    const key = sasTokenEnv ? 'sas_token_env' : accountKeyEnv ? 'account_key_env' : 'no_credentials';
    throw KILN_ERR_CONFIG_INVALID(
      key,
      where,
      'to come with account_url (a connection string names the account)',
    );
  }
  if (accountUrl !== undefined && connectionStringEnv) {
    throw KILN_ERR_CONFIG_INVALID(
      'connection_string_env',
      where,
      'to be left out when account_url is given (a connection string has its own endpoint)',
    );
  }
  if (sasTokenEnv && accountKeyEnv) {
    throw KILN_ERR_CONFIG_INVALID('account_key_env', where, 'to be left out when sas_token_env is given');
  }
  if (noCredentials && (sasTokenEnv || accountKeyEnv)) {
    throw KILN_ERR_CONFIG_INVALID(
      'no_credentials',
      where,
      'false when sas_token_env or account_key_env is given',
    );
  }
  return {
    container,
    prefix,
    accountUrl: accountUrl?.replace(/\/+$/, ''),
    connectionStringEnv: connectionStringEnv ?? 'AZURE_STORAGE_CONNECTION_STRING',
    sasTokenEnv,
    accountKeyEnv,
    noCredentials,
  };
}

/** The account's name: the first label of ACCOUNT.blob.core.windows.net, or the path's first segment (emulators). */
function accountOf(accountUrl: string): string {
  const u = new URL(accountUrl);
  const firstSegment = u.pathname.split('/').find(Boolean);
  const ipOrLocal = /^[\d.]+$|^\[.*\]$|^localhost$/.test(u.hostname);
  return (ipOrLocal ? firstSegment : u.hostname.split('.')[0]) ?? '';
}

/** Endpoint and authorization from the options and the environment; never throws: see Auth's 'missing'. */
function resolveAuth(options: AzureOptions, env: BackendContext['env']): { endpoint?: string; auth: Auth } {
  const missing = (detail: string): Auth => ({ kind: 'missing', detail });
  if (options.accountUrl !== undefined) {
    const endpoint = options.accountUrl;
    if (options.noCredentials) return { endpoint, auth: { kind: 'anonymous' } };
    const sasName = options.sasTokenEnv ?? (options.accountKeyEnv ? undefined : 'AZURE_STORAGE_SAS_TOKEN');
    const keyName = options.accountKeyEnv ?? (options.sasTokenEnv ? undefined : 'AZURE_STORAGE_KEY');
    const sas = sasName ? env[sasName] : undefined;
    if (sas) return { endpoint, auth: { kind: 'sas', token: sas.replace(/^\?/, '') } };
    const key = keyName ? env[keyName] : undefined;
    if (key)
      return {
        endpoint,
        auth: { kind: 'key', account: accountOf(endpoint), key: Buffer.from(key, 'base64') },
      };
    const names = [sasName, keyName].filter(Boolean).join(' or ');
    return {
      endpoint,
      auth: missing(
        `set ${names} in the daemon's environment, or no_credentials = true for a public container`,
      ),
    };
  }
  const name = options.connectionStringEnv;
  const text = env[name];
  if (!text) {
    return {
      auth: missing(
        `set ${name} to a connection string, or give account_url with a SAS token (AZURE_STORAGE_SAS_TOKEN) or the account key (AZURE_STORAGE_KEY)`,
      ),
    };
  }
  const parts = new Map<string, string>();
  for (const part of text.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0) parts.set(part.slice(0, eq).trim().toLowerCase(), part.slice(eq + 1).trim());
  }
  if (parts.get('usedevelopmentstorage')?.toLowerCase() === 'true') {
    return {
      endpoint: `http://127.0.0.1:10000/${DEV_ACCOUNT}`,
      auth: { kind: 'key', account: DEV_ACCOUNT, key: Buffer.from(DEV_KEY, 'base64') },
    };
  }
  const account = parts.get('accountname');
  const suffix = parts.get('endpointsuffix') ?? 'core.windows.net';
  const protocol = parts.get('defaultendpointsprotocol') ?? 'https';
  const endpoint = (
    parts.get('blobendpoint') ?? (account ? `${protocol}://${account}.blob.${suffix}` : undefined)
  )?.replace(/\/+$/, '');
  // The messages name the variable, never its value: it holds a secret.
  if (!endpoint)
    return { auth: missing(`the connection string in ${name} has neither BlobEndpoint nor AccountName`) };
  const sas = parts.get('sharedaccesssignature');
  if (sas) return { endpoint, auth: { kind: 'sas', token: sas.replace(/^\?/, '') } };
  const key = parts.get('accountkey');
  if (key && account) return { endpoint, auth: { kind: 'key', account, key: Buffer.from(key, 'base64') } };
  return {
    endpoint,
    auth: missing(
      `the connection string in ${name} has neither SharedAccessSignature nor AccountName and AccountKey`,
    ),
  };
}

/** The SharedKey signature (Authorize with Shared Key, service version 2015-02-21 and later). */
function sharedKey(
  account: string,
  key: Buffer,
  method: string,
  url: URL,
  headers: Readonly<Record<string, string>>,
): string {
  const h = (name: string) => headers[name] ?? '';
  const length = h('content-length') === '0' ? '' : h('content-length');
  const msHeaders = Object.keys(headers)
    .filter((name) => name.startsWith('x-ms-'))
    .sort()
    .map((name) => `${name}:${headers[name]!.trim()}\n`)
    .join('');
  const params = new Map<string, string[]>();
  for (const [name, value] of url.searchParams) {
    const lower = name.toLowerCase();
    params.set(lower, [...(params.get(lower) ?? []), value]);
  }
  const query = [...params.keys()]
    .sort()
    .map((name) => `\n${name}:${params.get(name)!.sort().join(',')}`)
    .join('');
  const toSign = [
    method,
    h('content-encoding'),
    h('content-language'),
    length,
    h('content-md5'),
    h('content-type'),
    '', // Date: x-ms-date is sent instead
    h('if-modified-since'),
    h('if-match'),
    h('if-none-match'),
    h('if-unmodified-since'),
    h('range'),
    `${msHeaders}/${account}${url.pathname}${query}`,
  ].join('\n');
  return `SharedKey ${account}:${createHmac('sha256', key).update(toSign, 'utf8').digest('base64')}`;
}

/** A request that failed on a reused keep-alive connection before any answer: safe to send again. */
class StaleSocketError extends Error {}

interface Reply {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: Buffer;
}

class AzureBackend implements RemoteBackend {
  /** Set once the container is known to exist: a HEAD 404 may not say which is missing. */
  #containerSeen = false;
  readonly #agent: http.Agent;

  constructor(
    private readonly options: AzureOptions,
    private readonly endpoint: string | undefined,
    private readonly auth: Auth,
    private readonly connectTimeoutMs: number,
    private readonly what: string,
  ) {
    // Idle connections close after 4 s (sooner when the server announces less): before most
    // servers drop them, so a request rarely meets a connection closing under it.
    const agentOptions = { keepAlive: true, maxSockets: 64, timeout: IDLE_MS };
    this.#agent = endpoint?.startsWith('https:')
      ? new https.Agent(agentOptions)
      : new http.Agent(agentOptions);
  }

  async get(name: EntryName, signal: AbortSignal): Promise<Buffer | undefined> {
    const reply = await this.#send('get', 'GET', this.#blob(name), signal);
    if (reply.status === 200) return reply.body;
    if (await this.#isMissingBlob(reply, signal)) return undefined;
    throw this.#failure('get', reply);
  }

  async put(name: EntryName, data: Buffer, signal: AbortSignal): Promise<void> {
    const reply = await this.#send('put', 'PUT', this.#blob(name), signal, data, {
      'content-type': 'application/octet-stream',
      'x-ms-blob-type': 'BlockBlob',
    });
    if (reply.status !== 201) throw this.#failure('put', reply);
  }

  async exists(name: EntryName, signal: AbortSignal): Promise<boolean> {
    const reply = await this.#send('exists', 'HEAD', this.#blob(name), signal);
    if (reply.status === 200) return true;
    if (await this.#isMissingBlob(reply, signal)) return false;
    throw this.#failure('exists', reply);
  }

  async remove(name: EntryName, signal: AbortSignal): Promise<void> {
    const reply = await this.#send('remove', 'DELETE', this.#blob(name), signal);
    if (reply.status === 202 || reply.status === 200) return;
    if (await this.#isMissingBlob(reply, signal)) return;
    throw this.#failure('remove', reply);
  }

  async close(): Promise<void> {
    this.#agent.destroy();
  }

  #blob(name: EntryName): string {
    const key = entryPath(name);
    const blob = this.options.prefix ? `${this.options.prefix}/${key}` : key;
    return `${encodeURIComponent(this.options.container)}/${blob.split('/').map(encodeURIComponent).join('/')}`;
  }

  /** A 404 for the blob itself; throws when the container is what is missing. */
  async #isMissingBlob(reply: Reply, signal: AbortSignal): Promise<boolean> {
    if (reply.status !== 404) return false;
    const code = reply.headers['x-ms-error-code'];
    if (code === 'ContainerNotFound') throw this.#noContainer();
    if (code !== 'BlobNotFound' && !this.#containerSeen) {
      const container = await this.#send(
        'exists',
        'GET',
        `${encodeURIComponent(this.options.container)}?restype=container`,
        signal,
      );
      if (container.status === 404) throw this.#noContainer();
      if (container.status !== 200 && container.status !== 403) throw this.#failure('exists', container);
    }
    this.#containerSeen = true;
    return true;
  }

  #noContainer(): KilnError {
    const url = `azure://${this.options.container}${this.options.prefix ? `/${this.options.prefix}` : ''}`;
    return KILN_ERR_STORAGE_NO_CONTAINER(
      this.what,
      `create the container, or fix the container name in the url (${url})`,
    );
  }

  #failure(op: string, reply: Reply): KilnError {
    const code = String(reply.headers['x-ms-error-code'] ?? 'no error code');
    const text = /<Message>([^\n<]*)/.exec(reply.body.toString('utf8'))?.[1]?.trim();
    const detail = `${code}${text ? `: ${text}` : ''} (HTTP ${reply.status})`;
    if (code === 'ContainerNotFound') return this.#noContainer();
    if (reply.status === 401 || reply.status === 403) return KILN_ERR_STORAGE_DENIED(this.what, detail);
    return KILN_ERR_STORAGE_REMOTE(`${op} on ${this.what}`, detail);
  }

  /** One request; rejects when it cannot be sent, is cut short, or the signal aborts. */
  async #send(
    op: string,
    method: string,
    path: string,
    signal: AbortSignal,
    body?: Buffer,
    extra: Readonly<Record<string, string>> = {},
  ): Promise<Reply> {
    if (this.auth.kind === 'missing') throw KILN_ERR_STORAGE_CREDENTIALS(this.what, this.auth.detail);
    const url = new URL(`${this.endpoint}/${path}`);
    if (this.auth.kind === 'sas') {
      for (const [k, v] of new URLSearchParams(this.auth.token)) url.searchParams.append(k, v);
    }
    const headers: Record<string, string> = {
      ...extra,
      'x-ms-date': new Date().toUTCString(),
      'x-ms-version': API_VERSION,
      'content-length': String(body?.length ?? 0),
    };
    if (this.auth.kind === 'key') {
      headers.authorization = sharedKey(this.auth.account, this.auth.key, method, url, headers);
    }
    try {
      try {
        return await this.#request(method, url, headers, signal, body);
      } catch (e) {
        // A kept-alive connection the server closed as we reused it: once more, on a new one.
        if (!(e instanceof StaleSocketError) || signal.aborted) throw e;
        return await this.#request(method, url, headers, signal, body);
      }
    } catch (e) {
      const detail = signal.aborted
        ? `gave up: ${String((signal.reason as Error)?.message ?? signal.reason)}`
        : (e as Error).message;
      throw Object.assign(KILN_ERR_STORAGE_REMOTE(`${op} on ${this.what}`, detail), { cause: e });
    }
  }

  #request(
    method: string,
    url: URL,
    headers: Record<string, string>,
    signal: AbortSignal,
    body: Buffer | undefined,
  ): Promise<Reply> {
    return new Promise<Reply>((resolve, reject) => {
      signal.throwIfAborted();
      const send = url.protocol === 'https:' ? https.request : http.request;
      const req = send(url, { method, headers, agent: this.#agent, signal });
      let connectTimer: NodeJS.Timeout | undefined;
      req.on('socket', (socket) => {
        if (!socket.connecting) return;
        connectTimer = setTimeout(
          () => req.destroy(new Error(`no connection to ${url.host} within ${this.connectTimeoutMs} ms`)),
          this.connectTimeoutMs,
        );
        socket.once('connect', () => clearTimeout(connectTimer));
      });
      let answered = false;
      req.on('error', (e: NodeJS.ErrnoException) => {
        clearTimeout(connectTimer);
        const stale = req.reusedSocket && !answered && (e.code === 'ECONNRESET' || e.code === 'EPIPE');
        reject(stale ? new StaleSocketError(e.message, { cause: e }) : e);
      });
      req.on('response', (res) => {
        answered = true;
        clearTimeout(connectTimer);
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('close', () => {
          if (!res.complete) reject(new Error('the connection closed before the whole response arrived'));
        });
        res.on('end', () => {
          const data = Buffer.concat(chunks);
          const expected = res.headers['content-length'];
          if (method !== 'HEAD' && expected !== undefined && Number(expected) !== data.length) {
            reject(new Error(`the body has ${data.length} bytes, Content-Length said ${expected}`));
            return;
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: data });
        });
      });
      req.end(body);
    });
  }
}

async function create(options: AzureOptions, context: BackendContext): Promise<RemoteBackend> {
  const { endpoint, auth } = resolveAuth(options, context.env);
  const what = `the Azure container "${options.container}"${endpoint ? ` at ${endpoint}` : ''}`;
  context.log.debug(`remote cache: ${what}, prefix "${options.prefix}", ${auth.kind} authorization`);
  return new AzureBackend(options, endpoint, auth, context.connectTimeoutMs, what);
}

export const azureBackend: BackendModule<AzureOptions> = {
  type: 'azure',
  schemes: ['azure'],
  keys: KEYS,
  parseOptions,
  // parseOptions refused credentials, a port and a query: what is left is the bucket and prefix.
  describe: (url) => withoutCredentials(url, 'azure://(invalid url)'),
  create,
};
