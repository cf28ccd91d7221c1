import { isUtf8 } from 'node:buffer';
import fs from 'node:fs';
import net from 'node:net';
import type { DiskStorage } from '../cache/disk-storage.js';
import { kilnSelfPaths } from '../client/find-executable.js';
import {
  Action,
  decodeRequest,
  encodeResponse,
  FrameReader,
  MAX_REQUEST_FRAME,
  type Request,
  RequestFlag,
  type Response,
  umaskOf,
} from '../client/protocol.js';
import type { ClientConfig } from '../config.js';
import type { Logger } from '../log.js';
import type { Stats } from '../stats/stats.js';
import type { CompileService } from './compile-service.js';

const CHECK_INTERVAL_MS = 1000;
const REQUEST_TIMEOUT_MS = 30_000;

export interface DaemonOptions {
  readonly socket: string;
  readonly config: ClientConfig;
  readonly service: CompileService;
  readonly storage: DiskStorage;
  readonly stats: Stats;
  readonly log: Logger;
  /** The kiln executables (native and Node client): never taken for a compiler. */
  readonly selfPaths: readonly string[];
  /** The umask of the client that started the daemon: for a client that does not send its own. */
  readonly callerUmask: number;
}

const text = (s: string, exitCode = 0): Response => ({
  action: Action.RESULT,
  exitCode,
  stdout: Buffer.from(s),
  stderr: Buffer.alloc(0),
});

function envObject(entries: readonly Buffer[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const entry of entries) {
    const s = entry.toString();
    const eq = s.indexOf('=');
    if (eq > 0) env[s.slice(0, eq)] = s.slice(eq + 1);
  }
  return env;
}

/**
 * The per-user daemon: a unix-socket server that answers thin clients, flushes stats, and exits
 * after `idleTimeout` seconds without requests or when another daemon took over its socket.
 */
export class Daemon {
  private server: net.Server | undefined;
  private inflight = 0;
  private lastActivity = Date.now();
  private socketIno: number | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopping = false;
  private readonly selfPaths: Set<string>;
  private readonly knownClients = new Set<string>();
  readonly stopped: Promise<void>;
  private resolveStopped!: () => void;

  constructor(private readonly opts: DaemonOptions) {
    this.selfPaths = kilnSelfPaths(...opts.selfPaths);
    this.stopped = new Promise((resolve) => {
      this.resolveStopped = resolve;
    });
  }

  /** Listens on the socket; resolves false when another live daemon already owns it. */
  async start(): Promise<boolean> {
    const { socket } = this.opts;
    const listen = () =>
      new Promise<net.Server>((resolve, reject) => {
        // Clients half-close after sending their request; the answer still has to go back.
        const server = net.createServer({ allowHalfOpen: true }, (conn) => this.onConnection(conn));
        server.once('error', reject);
        server.listen(socket, () => {
          server.off('error', reject);
          resolve(server);
        });
      });
    try {
      this.server = await listen();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err;
      if (await this.isAlive(socket)) return false;
      fs.rmSync(socket, { force: true });
      this.server = await listen();
    }
    fs.chmodSync(socket, 0o600);
    this.socketIno = fs.statSync(socket).ino;
    fs.writeFileSync(`${socket.replace(/\.sock$/, '')}.pid`, `${process.pid}\n`);
    this.timer = setInterval(() => this.tick(), CHECK_INTERVAL_MS);
    void this.opts.storage.rescan().then((bytes) => {
      if (bytes > this.opts.config.cacheSize) void this.opts.storage.evict();
    });
    this.opts.log.info(`daemon ${process.pid} listening on ${socket}`);
    return true;
  }

  private isAlive(socket: string): Promise<boolean> {
    return new Promise((resolve) => {
      const conn = net.connect(socket);
      conn.once('connect', () => {
        conn.destroy();
        resolve(true);
      });
      conn.once('error', () => resolve(false));
    });
  }

  private tick(): void {
    try {
      this.opts.stats.flush();
    } catch (err) {
      this.opts.log.warn(`cannot write stats: ${(err as Error).message}`);
    }
    let ours = false;
    try {
      ours = fs.statSync(this.opts.socket).ino === this.socketIno;
    } catch {
      ours = false;
    }
    if (!ours) {
      this.opts.log.info('socket taken over or removed: exiting');
      void this.stop(false);
      return;
    }
    const idle = this.opts.config.idleTimeout;
    if (idle > 0 && this.inflight === 0 && Date.now() - this.lastActivity > idle * 1000) {
      this.opts.log.info(`idle for ${idle}s: exiting`);
      void this.stop(true);
    }
  }

  private onConnection(conn: net.Socket): void {
    const reader = new FrameReader(MAX_REQUEST_FRAME);
    let handled = false;
    conn.setTimeout(REQUEST_TIMEOUT_MS, () => {
      if (!handled) conn.destroy();
    });
    conn.on('error', () => conn.destroy());
    // A client that stops sending before a whole frame arrived will never complete it.
    conn.on('end', () => {
      if (!handled) conn.destroy();
    });
    conn.on('data', (chunk: Buffer) => {
      if (handled) return;
      let body: Buffer | undefined;
      try {
        body = reader.push(chunk);
      } catch (err) {
        this.opts.log.warn(`dropping client: ${(err as Error).message}`);
        handled = true;
        conn.destroy();
        return;
      }
      if (!body) return;
      handled = true;
      conn.setTimeout(0);
      this.inflight++;
      this.lastActivity = Date.now();
      this.answer(body)
        .then((res) => conn.end(encodeResponse(res)))
        .catch((err: Error) => {
          this.opts.log.error(`request failed: ${err.stack}`);
          conn.end(encodeResponse({ action: Action.FALLBACK }));
        })
        .finally(() => {
          this.inflight--;
          this.lastActivity = Date.now();
        });
    });
  }

  private async answer(body: Buffer): Promise<Response> {
    let req: Request;
    try {
      req = decodeRequest(body);
    } catch (err) {
      this.opts.log.warn(`malformed request: ${(err as Error).message}`);
      return { action: Action.FALLBACK };
    }
    if (req.flags & RequestFlag.CONTROL) return this.control(req.argv[0]?.toString() ?? '');
    const parts = [req.cwd, req.self, ...req.argv, ...req.env];
    if (!parts.every((b) => isUtf8(b))) {
      this.opts.stats.count('requests');
      this.opts.stats.nonCacheable('non-UTF-8 arguments or environment');
      return { action: Action.FALLBACK };
    }
    const self = req.self.toString();
    if (self && !this.knownClients.has(self)) {
      this.knownClients.add(self);
      for (const real of kilnSelfPaths(self)) this.selfPaths.add(real);
    }
    return this.opts.service.handle({
      cwd: req.cwd.toString(),
      argv: req.argv.map(String),
      env: envObject(req.env),
      skip: this.selfPaths,
      stderrTty: (req.flags & RequestFlag.STDERR_TTY) !== 0,
      stdinTty: (req.flags & RequestFlag.STDIN_TTY) !== 0,
      umask: umaskOf(req.flags) ?? this.opts.callerUmask,
    });
  }

  private control(command: string): Response {
    const { stats, storage, config } = this.opts;
    switch (command) {
      case 'ping':
        return text(`${process.pid}\n`);
      case 'stats':
        return text(
          `${JSON.stringify({ stats: stats.snapshot(), cacheSize: storage.size(), cacheLimit: config.cacheSize, cacheDir: config.cacheDir })}\n`,
        );
      case 'zero-stats':
        stats.zero();
        return text('');
      case 'stop':
        setImmediate(() => void this.stop(true));
        return text('');
      default:
        return text(`unknown control command ${command}\n`, 2);
    }
  }

  async stop(removeSocket: boolean): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    clearInterval(this.timer);
    try {
      this.opts.stats.flush();
    } catch {
      // Already logged on earlier ticks; exiting regardless.
    }
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    if (removeSocket) {
      try {
        if (fs.statSync(this.opts.socket).ino === this.socketIno)
          fs.rmSync(this.opts.socket, { force: true });
      } catch {
        // Gone already.
      }
    }
    this.resolveStopped();
  }
}
