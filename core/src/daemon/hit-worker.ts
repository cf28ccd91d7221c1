/**
 * A hit worker: a process the daemon starts beside itself (hit-workers.ts) that accepts thin
 * clients on the daemon's own listening socket and answers direct-mode hits of gcc/clang calls
 * through the same CompileService code. Everything else — misses, rustc, nvcc, calls not cached,
 * control commands, a hit it cannot replay — it hands to the daemon unchanged over its IPC channel
 * and relays the daemon's answer, so there is one place that compiles, stores, counts misses and
 * talks to the cluster. Counts of its hits go to the daemon in batches and whenever it asks.
 *
 * It exits when the daemon says stop or when its IPC channel closes (the daemon is gone).
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { FileDigestCache } from '../cache/digest.js';
import { DiskStorage } from '../cache/disk-storage.js';
import { Action, decodeRequest, encodeResponse, RequestFlag } from '../client/protocol.js';
import { type ClientConfig, loadClientConfig } from '../config.js';
import { fileLogger, type Logger, silentLogger } from '../log.js';
import { daemonLogPath, defaultConfigPath, runtimeDir } from '../paths.js';
import { Stats } from '../stats/stats.js';
import { ClientCalls, configIdentity, serveConnection } from './client-calls.js';
import { CompileService } from './compile-service.js';
import { type FromWorker, LISTEN_FD, type ToWorker } from './hit-workers.js';

const STATS_EVERY_MS = 500;
const FAILED = encodeResponse({ action: Action.FALLBACK });

const send = (msg: FromWorker) => {
  if (process.connected) process.send?.(msg);
};

class HitWorker {
  private readonly pending = new Map<number, (answer: Buffer) => void>();
  private nextId = 0;
  private inflight = 0;
  private stopping = false;
  private server: net.Server | undefined;
  private readonly stats: Stats | undefined;
  private readonly service: CompileService | undefined;
  private readonly log: Logger;
  private readonly configFile: string;
  private readonly configId: string;

  constructor(
    private readonly calls: ClientCalls,
    daemonConfigId: string,
  ) {
    const env = process.env;
    this.configFile = env.KILN_CONFIG || defaultConfigPath(env);
    this.configId = configIdentity(this.configFile);
    let config: ClientConfig | undefined;
    try {
      // A config the daemon does not use (changed since it loaded it): hand everything on.
      if (this.configId === daemonConfigId) config = loadClientConfig(env);
    } catch {
      config = undefined;
    }
    this.log = config ? fileLogger(daemonLogPath(env), config.logLevel) : silentLogger;
    if (!config) return;
    process.umask(config.umask ?? 0o077);
    const digests = new FileDigestCache(undefined, path.join(runtimeDir(env), 'binaries.json'));
    const storage = new DiskStorage(config.cacheDir, config.cacheSize, this.log);
    this.stats = new Stats(config.cacheDir);
    this.service = new CompileService(config, storage, this.stats, digests, this.log);
  }

  /** Accepts on the daemon's listening socket, handed over as descriptor LISTEN_FD. */
  serve(): void {
    // Clients half-close after sending their request; the answer still has to go back.
    const server = net.createServer({ allowHalfOpen: true });
    this.server = server;
    server.on('error', (err) => {
      this.log.warn(`hit worker ${process.pid}: ${err.message}; leaving the calls to the daemon`);
      this.stop();
    });
    server.on('connection', (conn) =>
      serveConnection(conn, this.log, (body) => this.answer(body), FAILED, {
        begin: () => {
          this.inflight++;
        },
        end: () => {
          this.inflight--;
          if (this.stopping && this.inflight === 0) this.exit();
        },
      }),
    );
    server.listen({ fd: LISTEN_FD });
    setInterval(() => this.report(), STATS_EVERY_MS).unref();
    this.log.info(`hit worker ${process.pid} answering on the daemon's socket`);
  }

  private async answer(body: Buffer): Promise<Buffer> {
    if (this.service && configIdentity(this.configFile) === this.configId) {
      try {
        const req = decodeRequest(body);
        const call = req.flags & RequestFlag.CONTROL ? undefined : this.calls.compileRequest(req);
        const hit = call && (await this.service.directHit(call));
        if (hit) return encodeResponse(hit);
      } catch {
        // Malformed: the daemon says so in its log and answers.
      }
    }
    return this.handOn(body);
  }

  /** The daemon's answer to a call this worker does not answer itself. */
  private handOn(body: Buffer): Promise<Buffer> {
    if (!process.connected) return Promise.resolve(FAILED);
    const id = this.nextId++;
    return new Promise((resolve) => {
      this.pending.set(id, resolve);
      send({ type: 'call', id, body });
    });
  }

  private report(): void {
    const delta = this.stats?.take();
    if (delta && delta.requests === 0 && this.inflight === 0) return;
    send({ type: 'stats', delta: delta ?? null, busy: this.inflight > 0 });
  }

  onMessage(msg: ToWorker): void {
    if (msg.type === 'answer') {
      const resolve = this.pending.get(msg.id);
      this.pending.delete(msg.id);
      resolve?.(Buffer.from(msg.data.buffer, msg.data.byteOffset, msg.data.byteLength));
    } else if (msg.type === 'sync') {
      send({ type: 'synced', seq: msg.seq, delta: this.stats?.take() ?? null });
    } else if (msg.type === 'stop') {
      this.stop();
    }
  }

  /** Takes no more clients; exits when the ones it has are answered. */
  stop(): void {
    if (this.stopping) return;
    this.stopping = true;
    this.server?.close();
    if (this.inflight === 0) this.exit();
  }

  private exit(): void {
    // Calls still waiting for the daemon get the fallback: their clients compile themselves.
    for (const resolve of this.pending.values()) resolve(FAILED);
    this.pending.clear();
    const delta = this.stats?.take();
    if (process.connected && delta) process.send?.({ type: 'synced', seq: -1, delta }, () => process.exit(0));
    else process.exit(0);
  }
}

let worker: HitWorker | undefined;
process.on('message', (msg: ToWorker) => {
  if (msg.type === 'serve' && !worker) {
    worker = new HitWorker(new ClientCalls(msg.selfPaths, msg.callerUmask), msg.configId);
    worker.serve();
    return;
  }
  worker?.onMessage(msg);
});
// The daemon is gone (or let go of this worker): finish what is in hand, then exit.
process.on('disconnect', () => (worker ? worker.stop() : process.exit(0)));
for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.on(signal, () => worker?.stop());
if (!process.connected) {
  fs.writeSync(2, 'kiln: the hit worker is started by the kiln daemon, not by hand\n');
  process.exit(2);
}
