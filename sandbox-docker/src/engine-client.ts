/**
 * A small client for the Docker Engine API over its unix socket (Docker, rootless Docker, and
 * Podman's Docker-compatible service). No CLI and no HTTP library: node:http with `socketPath`.
 */
import http from 'node:http';
import type { Duplex, Readable } from 'node:stream';

/** The engine could not be reached at all (no socket, refused, reset): it is down or elsewhere. */
export class EngineUnreachableError extends Error {
  constructor(
    readonly socketPath: string,
    cause: string,
  ) {
    super(`no container engine answers at unix://${socketPath} (${cause})`);
  }
}

/** The engine answered with an error status. */
export class EngineError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/**
 * The socket of the engine: `engine_socket` when configured, else DOCKER_HOST (unix:// only),
 * else Docker's default. Throws when DOCKER_HOST names something other than a unix socket.
 */
export function engineSocket(configured: string | undefined, dockerHost = process.env.DOCKER_HOST): string {
  const spec = configured ?? (dockerHost || 'unix:///var/run/docker.sock');
  if (spec.startsWith('/')) return spec;
  if (spec.startsWith('unix://')) return spec.slice('unix://'.length);
  throw new Error(
    `${configured ? 'engine_socket' : 'DOCKER_HOST'} is ${spec}: only a local unix socket is supported (unix:///path); an engine on TCP would expose the worker's jobs to the network`,
  );
}

const UNREACHABLE = new Set(['ENOENT', 'ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'EACCES', 'ENOTSOCK']);

export interface RequestOptions {
  readonly body?: unknown;
  /** A raw body (an image's tar stream) instead of JSON. */
  readonly stream?: Readable;
  readonly timeoutMs?: number;
}

export class EngineClient {
  readonly #agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  #prefix: string | undefined;

  constructor(
    readonly socketPath: string,
    private readonly timeoutMs = 30_000,
  ) {}

  /** `/version`, and from then on requests use an API version both sides speak. */
  async version(): Promise<{
    Version: string;
    ApiVersion: string;
    MinAPIVersion?: string;
    Os: string;
    Arch: string;
  }> {
    const v = (await this.json('GET', '/version', {}, false)) as {
      Version: string;
      ApiVersion: string;
      MinAPIVersion?: string;
      Os: string;
      Arch: string;
    };
    // 1.41 (Docker 20.10, Podman 3+) has all this client uses; newer engines may refuse old versions.
    const min = Number(v.MinAPIVersion ?? '1.12');
    this.#prefix = `/v${min > 1.41 ? v.MinAPIVersion : Number(v.ApiVersion) < 1.41 ? v.ApiVersion : '1.41'}`;
    return v;
  }

  #path(p: string, versioned: boolean): string {
    return versioned ? `${this.#prefix ?? '/v1.41'}${p}` : p;
  }

  #unreachable(err: NodeJS.ErrnoException): Error {
    return UNREACHABLE.has(err.code ?? '') ? new EngineUnreachableError(this.socketPath, err.code!) : err;
  }

  /** Sends a request and resolves with the response (its body unread). Rejects when the engine is unreachable. */
  send(method: string, p: string, o: RequestOptions = {}, versioned = true): Promise<http.IncomingMessage> {
    return new Promise((resolve, reject) => {
      const headers: Record<string, string> = {};
      let payload: Buffer | undefined;
      if (o.body !== undefined) {
        payload = Buffer.from(JSON.stringify(o.body));
        headers['content-type'] = 'application/json';
        headers['content-length'] = String(payload.length);
      } else if (o.stream) {
        headers['content-type'] = 'application/x-tar';
      }
      const req = http.request({
        socketPath: this.socketPath,
        path: this.#path(p, versioned),
        method,
        headers,
        agent: this.#agent,
      });
      const timer = setTimeout(
        () =>
          req.destroy(
            new Error(`${method} ${p}: no answer from the engine in ${o.timeoutMs ?? this.timeoutMs} ms`),
          ),
        o.timeoutMs ?? this.timeoutMs,
      );
      req.on('error', (err) => {
        clearTimeout(timer);
        reject(this.#unreachable(err));
      });
      req.on('response', (res) => {
        clearTimeout(timer);
        resolve(res);
      });
      if (o.stream) {
        o.stream.on('error', (err) => req.destroy(err));
        o.stream.pipe(req);
      } else req.end(payload);
    });
  }

  /** A request whose answer is JSON (or empty); rejects with EngineError on a status ≥ 400. */
  async json(method: string, p: string, o: RequestOptions = {}, versioned = true): Promise<unknown> {
    const res = await this.send(method, p, o, versioned);
    const body = await readAll(res).catch((err: NodeJS.ErrnoException) => {
      throw this.#unreachable(err);
    });
    const text = body.toString('utf8');
    if ((res.statusCode ?? 500) >= 400) {
      let message = text.trim();
      try {
        message = (JSON.parse(text) as { message?: string }).message ?? message;
      } catch {}
      throw new EngineError(res.statusCode ?? 500, `${method} ${p}: ${res.statusCode} ${message}`);
    }
    return text ? JSON.parse(text) : undefined;
  }

  /**
   * Attaches to a container's stdin, stdout and stderr: the connection, upgraded, carries stdin raw
   * one way and Docker's multiplexed frames the other. Rejects when the engine refuses.
   */
  attach(id: string): Promise<Duplex> {
    return new Promise((resolve, reject) => {
      const req = http.request({
        socketPath: this.socketPath,
        path: this.#path(`/containers/${id}/attach?stream=1&stdin=1&stdout=1&stderr=1`, true),
        method: 'POST',
        headers: { connection: 'Upgrade', upgrade: 'tcp' },
      });
      const timer = setTimeout(
        () => req.destroy(new Error('attach: no answer from the engine')),
        this.timeoutMs,
      );
      req.on('error', (err) => {
        clearTimeout(timer);
        reject(this.#unreachable(err));
      });
      req.on('upgrade', (_res, socket, head) => {
        clearTimeout(timer);
        if (head.length) socket.unshift(head);
        resolve(socket);
      });
      req.on('response', (res) => {
        clearTimeout(timer);
        readAll(res)
          .catch(() => Buffer.alloc(0))
          .then((b) =>
            reject(
              new EngineError(
                res.statusCode ?? 500,
                `attach ${id}: ${res.statusCode} ${b.toString().trim()}`,
              ),
            ),
          );
      });
      req.end();
    });
  }

  close(): void {
    this.#agent.destroy();
  }
}

export function readAll(stream: Readable): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => resolve(Buffer.concat(chunks)));
    stream.on('error', reject);
    stream.on('aborted', () => reject(Object.assign(new Error('aborted'), { code: 'ECONNRESET' })));
  });
}
