import fs from 'node:fs';
import net from 'node:net';
import type { DiskStorage } from '../cache/disk-storage.js';
import type { TieredStorage } from '../cache/tiered-storage.js';
import {
  Action,
  decodeRequest,
  encodeResponse,
  type Request,
  RequestFlag,
  type Response,
} from '../client/protocol.js';
import { toolchainDir } from '../cluster/client-config.js';
import type { ClientConfig } from '../config.js';
import type { Logger } from '../log.js';
import type { Stats } from '../stats/stats.js';
import { ClientCalls, configIdentity, serveConnection } from './client-calls.js';
import type { CompileService } from './compile-service.js';
import { HitWorkers } from './hit-workers.js';
import type { RemoteCompiler } from './remote-compile.js';

const CHECK_INTERVAL_MS = 1000;
const FAILED = encodeResponse({ action: Action.FALLBACK });
/** For `--show-stats`, when [dist] is configured: the cluster problem in force, or null. */
const cluster = (remote: RemoteCompiler | undefined) =>
  remote ? { cluster: remote.notices.status() ?? null } : {};

/** How long a stopping daemon waits for writes to remote cache tiers. */
const TIER_FLUSH_MS = 10_000;
/** How long a reload keeps flushing the replaced stats: past the default job_timeout (600 s). */
const RETIRED_STATS_MS = 20 * 60_000;

/** What the config decides; replaced as a whole when the config file changes. */
export interface DaemonParts {
  readonly config: ClientConfig;
  readonly service: CompileService;
  /** The local disk: eviction, `--clear` and its size. */
  readonly storage: DiskStorage;
  /** The disk followed by remote tiers, when `[[cache.remote]]` names any. */
  readonly tiers?: TieredStorage | undefined;
  readonly stats: Stats;
  readonly log: Logger;
  readonly remote?: RemoteCompiler | undefined;
}

export interface DaemonOptions {
  readonly socket: string;
  readonly parts: DaemonParts;
  /** The config file to watch (it may not exist yet). */
  readonly configFile: string;
  /** Builds the parts from the config file as it is now; throws on a config mistake. */
  readonly reload: () => Promise<DaemonParts>;
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

/**
 * The per-user daemon: a unix-socket server that answers thin clients, flushes stats, and exits
 * after `idleTimeout` seconds without requests or when another daemon took over its socket. With
 * `daemon_workers`, hit workers (hit-workers.ts) accept on the same socket and answer hits too.
 */
export class Daemon {
  private server: net.Server | undefined;
  private inflight = 0;
  private lastActivity = Date.now();
  private socketIno: number | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopping = false;
  private readonly calls: ClientCalls;
  private workers: HitWorkers | undefined;
  private parts: DaemonParts;
  private configId: string;
  private reloading: Promise<void> | undefined;
  /** Stats of replaced parts: requests in flight at a reload still count there; flushed a while. */
  private retired: { stats: Stats; until: number }[] = [];
  readonly stopped: Promise<void>;
  private resolveStopped!: () => void;

  constructor(private readonly opts: DaemonOptions) {
    this.calls = new ClientCalls(opts.selfPaths, opts.callerUmask);
    this.parts = opts.parts;
    this.configId = this.configIdentity();
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
    this.rescan(this.parts);
    this.parts.log.info(`daemon ${process.pid} listening on ${socket}`);
    return true;
  }

  /**
   * Hit workers start with the first direct hit the daemon answers: a warm build is under way.
   * A cold build (all misses, which only the daemon compiles) never pays for starting them.
   */
  private startWorkers(server: net.Server): void {
    if (this.workers || this.parts.config.daemonWorkers === 0) return;
    this.workers = new HitWorkers({
      workers: () => this.parts.config.daemonWorkers,
      server,
      callerUmask: this.opts.callerUmask,
      selfPaths: this.opts.selfPaths,
      configId: () => this.configId,
      answer: async (body) => {
        this.inflight++;
        try {
          return encodeResponse(await this.answer(body));
        } catch (err) {
          this.parts.log.error(`request failed: ${(err as Error).stack}`);
          return FAILED;
        } finally {
          this.inflight--;
          this.lastActivity = Date.now();
        }
      },
      count: (delta) => this.parts.stats.add(delta),
      log: this.parts.log,
    });
    this.workers.start();
  }

  private rescan(parts: DaemonParts): void {
    void parts.storage.rescan().then((bytes) => {
      if (bytes > parts.config.cacheSize) void parts.storage.evict();
    });
  }

  private configIdentity(): string {
    return configIdentity(this.opts.configFile);
  }

  /**
   * Picks up an edited config file before answering: builds everything again from it and serves
   * the next requests with that, like a fresh daemon. A config with a mistake keeps the settings
   * from before (said once in the log, per edit), so a typo never stops compiles.
   */
  private checkConfig(): Promise<void> | undefined {
    if (this.reloading) return this.reloading;
    const id = this.configIdentity();
    if (id === this.configId) return undefined;
    this.configId = id;
    const file = this.opts.configFile;
    this.reloading = this.opts
      .reload()
      .then((next) => {
        const old = this.parts;
        this.parts = next;
        this.retired.push({ stats: old.stats, until: Date.now() + RETIRED_STATS_MS });
        this.flushStats();
        // Jobs already on the cluster finish with the old client; none outlives job_timeout.
        if (old.remote) {
          const grace = ((old.config.dist?.job_timeout ?? 600) + 30) * 1000;
          setTimeout(() => void old.remote?.close(), grace).unref();
        }
        // Writes already on their way to the old remote tiers finish first.
        if (old.tiers) void old.tiers.flush(TIER_FLUSH_MS).then(() => old.tiers?.close());
        this.rescan(next);
        // Workers read the config when they start: new ones for the new settings.
        this.workers?.restart();
        next.log.info(`config file ${file} changed: reloaded`);
      })
      .catch((err: Error) => {
        this.parts.log.warn(
          `config file ${file} changed but cannot be used, still using the settings from before: ${err.message}`,
        );
      })
      .finally(() => {
        this.reloading = undefined;
      });
    return this.reloading;
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

  private flushStats(): void {
    this.retired = this.retired.filter((r) => r.until > Date.now());
    for (const stats of [...this.retired.map((r) => r.stats), this.parts.stats]) {
      try {
        stats.flush();
      } catch (err) {
        this.parts.log.warn(`cannot write stats: ${(err as Error).message}`);
      }
    }
  }

  private tick(): void {
    this.flushStats();
    let ours = false;
    try {
      ours = fs.statSync(this.opts.socket).ino === this.socketIno;
    } catch {
      ours = false;
    }
    if (!ours) {
      this.parts.log.info('socket taken over or removed: exiting');
      void this.stop(false);
      return;
    }
    const idle = this.parts.config.idleTimeout;
    if (
      idle > 0 &&
      this.inflight === 0 &&
      Date.now() - this.lastActivity > idle * 1000 &&
      !this.workers?.activeWithin(idle * 1000)
    ) {
      this.parts.log.info(`idle for ${idle}s: exiting`);
      void this.stop(true);
    }
  }

  private onConnection(conn: net.Socket): void {
    serveConnection(conn, this.parts.log, async (body) => encodeResponse(await this.answer(body)), FAILED, {
      begin: () => {
        this.inflight++;
        this.lastActivity = Date.now();
      },
      end: () => {
        this.inflight--;
        this.lastActivity = Date.now();
      },
    });
  }

  private async answer(body: Buffer): Promise<Response> {
    let req: Request;
    try {
      req = decodeRequest(body);
    } catch (err) {
      this.parts.log.warn(`malformed request: ${(err as Error).message}`);
      return { action: Action.FALLBACK };
    }
    await this.checkConfig();
    if (req.flags & RequestFlag.CONTROL) return this.control(req.argv.map(String));
    const call = this.calls.compileRequest(req);
    if (!call) {
      this.parts.stats.count('requests');
      this.parts.stats.nonCacheable('non-UTF-8 arguments or environment');
      return { action: Action.FALLBACK };
    }
    const res = await this.parts.service.handle(call);
    if (!this.workers && this.server && this.parts.stats.pending.hitsDirect > 0)
      this.startWorkers(this.server);
    return res;
  }

  private async control([command, ...args]: readonly string[]): Promise<Response> {
    const { stats, storage, config } = this.parts;
    switch (command) {
      case 'ping':
        return text(`${process.pid}\n`);
      case 'stats': {
        // Every hit a worker answered before this call is in the totals.
        await this.workers?.sync();
        const tiers = (await this.parts.tiers?.sizes()) ?? [];
        const daemon = { pid: process.pid, workers: this.workers?.list() ?? [] };
        return text(
          `${JSON.stringify({ stats: stats.snapshot(), cacheSize: storage.size(), cacheLimit: config.cacheSize, cacheDir: config.cacheDir, tiers, ...cluster(this.parts.remote), daemon })}\n`,
        );
      }
      case 'zero-stats':
        await this.workers?.sync();
        stats.zero();
        return text('');
      case 'clear': {
        const toolchains = args.includes('--toolchains');
        const removed = await storage.clear();
        let also = '';
        if (toolchains) {
          await fs.promises.rm(toolchainDir(config.cacheDir, config.dist), { recursive: true, force: true });
          also = ' and the packaged toolchains';
          // The cluster client remembers what it packed: a fresh daemon starts without that.
          if (this.parts.remote) setImmediate(() => void this.stop(true));
        }
        return text(`kiln: cleared ${removed} cache entries${also} in ${config.cacheDir}\n`);
      }
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
    // Workers first: calls they hold may still need this daemon.
    await this.workers?.stop();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    // What a build stored shortly before reaches the shared tiers before the daemon goes.
    if (this.parts.tiers) {
      if (!(await this.parts.tiers.flush(TIER_FLUSH_MS)))
        this.parts.log.warn('stopping with writes to remote cache tiers unfinished');
      await this.parts.tiers.close();
    }
    this.flushStats();
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
