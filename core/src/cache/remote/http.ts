/**
 * HTTP and WebDAV: GET, PUT, HEAD and DELETE of `<url>/<namespace>/<kind>/<key>` (layout "kiln")
 * or `<url>/ac/<sha256>` (layout "bazel", what bazel-remote serves). Any server that stores a PUT
 * body and returns it on GET works: nginx with its dav module, Apache mod_dav, bazel-remote,
 * ccache's http backends. A PUT answered 409 (missing parent collection, plain WebDAV) creates the
 * collections with MKCOL and tries once more (nginx answers 500 there). node:http only: no client library to load.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { KILN_ERR_CONFIG_INVALID } from '../../errors.js';
import type { BackendContext, BackendModule, EntryName, RemoteBackend } from './backend.js';
import { entryPath } from './backend.js';
import { withoutCredentials } from './options.js';

export interface HttpOptions {
  readonly url: URL;
  readonly layout: 'kiln' | 'bazel';
  /** `Authorization` header value: Basic from the URL's user:password, or Bearer from bearer_token_env/_file. */
  readonly authorization: string | undefined;
  /** PEM bundle for a server whose certificate is not from a public CA. */
  readonly caFile: string | undefined;
  readonly headers: Readonly<Record<string, string>>;
}

/** Bodies larger than this are refused (a hostile server must not make the daemon allocate it). */
const MAX_BODY = 1024 ** 3;

class HttpStatusError extends Error {
  constructor(
    readonly status: number,
    method: string,
    where: string,
  ) {
    super(
      `${method} ${where} answered HTTP ${status}${status === 401 || status === 403 ? ' (check the credentials)' : ''}`,
    );
  }
}

function tokenFrom(table: Readonly<Record<string, unknown>>, where: string): string | undefined {
  if (table.bearer_token_env !== undefined) {
    const name = table.bearer_token_env;
    if (typeof name !== 'string' || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(name))
      throw KILN_ERR_CONFIG_INVALID('bearer_token_env', where, 'the name of an environment variable');
    const value = process.env[name];
    if (!value)
      throw KILN_ERR_CONFIG_INVALID(
        'bearer_token_env',
        where,
        `a variable that is set (${name} is empty or unset)`,
      );
    return value.trim();
  }
  if (table.bearer_token_file !== undefined) {
    const file = table.bearer_token_file;
    if (typeof file !== 'string') throw KILN_ERR_CONFIG_INVALID('bearer_token_file', where, 'a path');
    let token: string;
    try {
      token = fs.readFileSync(file, 'utf8').trim();
    } catch (err) {
      throw KILN_ERR_CONFIG_INVALID(
        'bearer_token_file',
        where,
        `a readable file (${(err as Error).message})`,
      );
    }
    if (!token || /\s/.test(token))
      throw KILN_ERR_CONFIG_INVALID('bearer_token_file', where, 'a file holding one token without spaces');
    return token;
  }
  return undefined;
}

export const httpBackend: BackendModule<HttpOptions> = {
  type: 'http',
  schemes: ['http', 'https'],
  keys: ['layout', 'bearer_token_env', 'bearer_token_file', 'ca_file', 'headers'],

  parseOptions(raw, table, where) {
    let url: URL;
    try {
      url = new URL(raw);
    } catch {
      throw KILN_ERR_CONFIG_INVALID('url', where, 'a URL such as "https://cache.example.com/kiln"');
    }
    if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.search || url.hash)
      throw KILN_ERR_CONFIG_INVALID('url', where, 'an http:// or https:// URL without ?query or #fragment');
    const layout = table.layout ?? 'kiln';
    if (layout !== 'kiln' && layout !== 'bazel')
      throw KILN_ERR_CONFIG_INVALID('layout', where, '"kiln" or "bazel"');
    const token = tokenFrom(table, where);
    if (token && url.username)
      throw KILN_ERR_CONFIG_INVALID(
        'url',
        where,
        'either a user:password in the URL or a bearer token, not both',
      );
    const authorization = token
      ? `Bearer ${token}`
      : url.username
        ? `Basic ${Buffer.from(`${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`).toString('base64')}`
        : undefined;
    const caFile = table.ca_file;
    if (caFile !== undefined && (typeof caFile !== 'string' || !fs.existsSync(caFile)))
      throw KILN_ERR_CONFIG_INVALID('ca_file', where, 'the path of a PEM file that exists');
    const headers = table.headers ?? {};
    if (
      typeof headers !== 'object' ||
      headers === null ||
      Array.isArray(headers) ||
      !Object.entries(headers).every(
        ([k, v]) => /^[A-Za-z0-9-]+$/.test(k) && typeof v === 'string' && !/[\r\n]/.test(v),
      )
    )
      throw KILN_ERR_CONFIG_INVALID('headers', where, 'a table of header names to string values');
    url.username = '';
    url.password = '';
    if (!url.pathname.endsWith('/')) url.pathname += '/';
    return Object.freeze({
      url,
      layout,
      authorization,
      caFile: caFile as string | undefined,
      headers: headers as Record<string, string>,
    });
  },

  describe(raw) {
    return withoutCredentials(raw, raw);
  },

  async create(options, context) {
    return new HttpBackend(options, context);
  },
};

class HttpBackend implements RemoteBackend {
  private readonly agent: http.Agent;

  constructor(
    private readonly options: HttpOptions,
    private readonly context: BackendContext,
  ) {
    const secure = options.url.protocol === 'https:';
    const agentOptions = { keepAlive: true, maxSockets: 16 };
    this.agent = secure
      ? new https.Agent({
          ...agentOptions,
          ...(options.caFile && { ca: fs.readFileSync(options.caFile) }),
        })
      : new http.Agent(agentOptions);
  }

  private pathOf(name: EntryName): string {
    if (this.options.layout === 'bazel')
      return `ac/${createHash('sha256').update(entryPath(name)).digest('hex')}`;
    return entryPath(name);
  }

  private request(
    method: string,
    rel: string,
    signal: AbortSignal,
    body?: Buffer,
  ): Promise<{ status: number; body: Buffer }> {
    const url = new URL(rel, this.options.url);
    const mod = url.protocol === 'https:' ? https : http;
    return new Promise((resolve, reject) => {
      const headers: Record<string, string | number> = { ...this.options.headers };
      if (this.options.authorization) headers.authorization = this.options.authorization;
      if (body) {
        headers['content-length'] = body.length;
        headers['content-type'] = 'application/octet-stream';
      }
      const req = mod.request(url, { method, headers, agent: this.agent, signal }, (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        const declared = Number(res.headers['content-length'] ?? 0);
        if (declared > MAX_BODY) {
          req.destroy(new Error(`${method} ${url.pathname}: a body of ${declared} bytes is too large`));
          return;
        }
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > MAX_BODY) req.destroy(new Error(`${method} ${url.pathname}: body too large`));
          else chunks.push(c);
        });
        res.on('end', () => {
          if (!res.complete) reject(new Error(`${method} ${url.pathname}: the answer was cut off`));
          else resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) });
        });
        res.on('error', reject);
      });
      req.on('error', reject);
      // A server that does not accept the connection in time is as good as down.
      req.on('socket', (socket) => {
        if (!socket.connecting) return;
        const timer = setTimeout(
          () =>
            req.destroy(new Error(`no connection to ${url.host} within ${this.context.connectTimeoutMs} ms`)),
          this.context.connectTimeoutMs,
        );
        socket.once(url.protocol === 'https:' ? 'secureConnect' : 'connect', () => clearTimeout(timer));
        socket.once('close', () => clearTimeout(timer));
      });
      req.end(body);
    });
  }

  async get(name: EntryName, signal: AbortSignal): Promise<Buffer | undefined> {
    const res = await this.request('GET', this.pathOf(name), signal);
    if (res.status === 404) return undefined;
    if (res.status !== 200) throw new HttpStatusError(res.status, 'GET', this.options.url.host);
    return res.body;
  }

  async put(name: EntryName, data: Buffer, signal: AbortSignal): Promise<void> {
    const rel = this.pathOf(name);
    let res = await this.request('PUT', rel, signal, data);
    if (res.status === 409 || res.status === 500) {
      // Plain WebDAV: the collections must exist first (RFC 4918 answers 409; nginx without
      // create_full_put_path answers 500). Made once, then the PUT is tried again.
      const parts = rel.split('/').slice(0, -1);
      for (let i = 1; i <= parts.length; i++) {
        const made = await this.request('MKCOL', `${parts.slice(0, i).join('/')}/`, signal);
        if (made.status >= 400 && made.status !== 405)
          throw new HttpStatusError(made.status, 'MKCOL', this.options.url.host);
      }
      res = await this.request('PUT', rel, signal, data);
    }
    if (res.status < 200 || res.status > 299)
      throw new HttpStatusError(res.status, 'PUT', this.options.url.host);
  }

  async exists(name: EntryName, signal: AbortSignal): Promise<boolean> {
    const res = await this.request('HEAD', this.pathOf(name), signal);
    if (res.status === 404) return false;
    if (res.status !== 200) throw new HttpStatusError(res.status, 'HEAD', this.options.url.host);
    return true;
  }

  async remove(name: EntryName, signal: AbortSignal): Promise<void> {
    const res = await this.request('DELETE', this.pathOf(name), signal);
    if (res.status !== 404 && (res.status < 200 || res.status > 299))
      throw new HttpStatusError(res.status, 'DELETE', this.options.url.host);
  }

  async close(): Promise<void> {
    this.agent.destroy();
  }
}
