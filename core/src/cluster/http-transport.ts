/**
 * HTTP for kiln's own clients (the daemon, `kiln --dist-*`, a worker's heartbeats) over node:http
 * with keep-alive connections. Not undici: importing it took ~75 ms of CPU (more under load) at
 * every daemon start, and ~21 MB of a worker's memory, which every fork of a job then copies.
 */
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { type Fingerprint, PinnedAgent } from './tls/pinned-agent.js';

export interface Exchange {
  readonly method: 'GET' | 'POST' | 'PUT';
  readonly headers: Readonly<Record<string, string>>;
  readonly body?: Buffer | fs.ReadStream;
  /** For the whole exchange, connecting included. */
  readonly timeoutMs: number;
  /** Trust exactly the certificate with this fingerprint (https only), not the CAs. */
  readonly pin?: Fingerprint;
}

export interface TransportOptions {
  /** Allow plain http:// URLs (`insecure = true`); otherwise they are refused before connecting. */
  readonly insecure?: boolean;
  /** PEM CA certificates trusted instead of the system's, for servers that are not pinned. */
  readonly ca?: string;
  /**
   * Called when a connection it made closes: the server closed an idle one, or went away (a
   * restart). Also called for connections it closes itself.
   */
  readonly onConnectionClose?: () => void;
}

export interface Answer {
  readonly status: number;
  readonly body: Buffer;
}

const SOCKETS_PER_HOST = 32;

/** A kept-alive connection was reset as a request went out on it. */
class StaleConnection extends Error {}

/** A URL refused before connecting: plain http without `insecure = true`. */
export class InsecureUrl extends Error {}

export class HttpTransport {
  private readonly agents: { 'http:': http.Agent; 'https:': https.Agent };
  private readonly pinned = new Map<Fingerprint, PinnedAgent>();
  private readonly watched = new WeakSet<object>();

  constructor(private readonly opts: TransportOptions = {}) {
    this.agents = {
      'http:': new http.Agent({ keepAlive: true, maxSockets: SOCKETS_PER_HOST }),
      'https:': new https.Agent({
        keepAlive: true,
        maxSockets: SOCKETS_PER_HOST,
        ...(opts.ca ? { ca: opts.ca } : {}),
      }),
    };
  }

  private agentFor(target: URL, pin: Fingerprint | undefined): http.Agent | Error {
    if (target.protocol === 'http:') {
      if (!this.opts.insecure)
        return new InsecureUrl(`plain http to ${target.host} refused: use https, or set insecure = true`);
      return this.agents['http:'];
    }
    if (target.protocol !== 'https:') return new Error(`unsupported protocol ${target.protocol}`);
    if (!pin) return this.agents['https:'];
    let agent = this.pinned.get(pin);
    if (!agent) {
      agent = new PinnedAgent(pin, { keepAlive: true, maxSockets: SOCKETS_PER_HOST });
      this.pinned.set(pin, agent);
    }
    return agent;
  }

  /**
   * One request on a kept-alive connection; rejects on network errors, timeouts and cut answers.
   * A connection the server closed just as it was reused never delivered the request: that one is
   * sent again on a fresh connection (a file upload, whose stream is spent, is not).
   */
  async exchange(url: string, init: Exchange): Promise<Answer> {
    try {
      return await this.send(url, init);
    } catch (err) {
      if (!(err instanceof StaleConnection) || init.body instanceof fs.ReadStream) throw err;
      return this.send(url, init);
    }
  }

  private send(url: string, init: Exchange): Promise<Answer> {
    const target = new URL(url);
    const agent = this.agentFor(target, init.pin);
    if (agent instanceof Error) return Promise.reject(agent);
    const request = target.protocol === 'https:' ? https.request : http.request;
    return new Promise<Answer>((resolve, reject) => {
      const req = request(
        target,
        { method: init.method, headers: init.headers, agent, signal: AbortSignal.timeout(init.timeoutMs) },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
          res.on('error', reject);
          res.on('close', () => {
            if (!res.complete) reject(new Error('the connection closed before the answer ended'));
          });
        },
      );
      const onClose = this.opts.onConnectionClose;
      if (onClose) {
        req.once('socket', (socket) => {
          if (this.watched.has(socket)) return;
          this.watched.add(socket);
          socket.once('close', () => onClose());
        });
      }
      req.on('error', (err: NodeJS.ErrnoException) => {
        reject(req.reusedSocket && err.code === 'ECONNRESET' ? new StaleConnection(err.message) : err);
      });
      if (init.body instanceof fs.ReadStream) {
        init.body.on('error', (err) => req.destroy(err));
        init.body.pipe(req);
      } else req.end(init.body);
    });
  }

  close(): void {
    for (const agent of Object.values(this.agents)) agent.destroy();
    for (const agent of this.pinned.values()) agent.destroy();
  }
}
