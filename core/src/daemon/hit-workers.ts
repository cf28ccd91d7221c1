/**
 * The daemon's hit workers (hit-worker.ts): processes that share its listening socket, so the
 * kernel hands each new client to whichever process is free, and hits of a parallel build run on
 * as many cores as there are workers. The daemon stays the one place that compiles and stores;
 * workers hand it every call that is not a direct hit.
 *
 * Counts: a worker sends its hits' counts every half second and whenever the daemon syncs (before
 * `--show-stats` and `--zero-stats`), so the totals the user reads include every call answered.
 */
import { type ChildProcess, fork } from 'node:child_process';
import type net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from '../log.js';
import type { StatsData } from '../stats/stats.js';

const WORKER_MAIN = path.join(path.dirname(fileURLToPath(import.meta.url)), 'hit-worker.js');
/** The worker's descriptor for the listening socket (after stdin, stdout, stderr and the IPC channel). */
export const LISTEN_FD = 4;
const SYNC_TIMEOUT_MS = 2000;
const STOP_TIMEOUT_MS = 5000;
/** A worker that dies is started again, at most this many times a minute. */
const MAX_RESTARTS_PER_MINUTE = 5;

export type ToWorker =
  | {
      readonly type: 'serve';
      readonly callerUmask: number;
      readonly selfPaths: readonly string[];
      readonly configId: string;
    }
  | { readonly type: 'answer'; readonly id: number; readonly data: Uint8Array }
  | { readonly type: 'sync'; readonly seq: number }
  | { readonly type: 'stop' };

export type FromWorker =
  | { readonly type: 'call'; readonly id: number; readonly body: Uint8Array }
  /** Counts since the last message, and whether it is answering a call now. */
  | { readonly type: 'stats'; readonly delta: StatsData | null; readonly busy: boolean }
  | { readonly type: 'synced'; readonly seq: number; readonly delta: StatsData | null };

export interface HitWorkersOptions {
  /** How many to run (the config's `daemon_workers`, read at each start and restart). */
  workers(): number;
  readonly server: net.Server;
  readonly callerUmask: number;
  readonly selfPaths: readonly string[];
  /** The identity of the config file the daemon uses: a worker that reads another hands calls on. */
  configId(): string;
  /** The daemon's answer to a call a worker hands on (an encoded response). */
  answer(body: Buffer): Promise<Buffer>;
  /** A worker's counts, to add to the daemon's. */
  count(delta: StatsData): void;
  readonly log: Logger;
}

interface Worker {
  readonly child: ChildProcess;
  /** Hits it answered since it started. */
  hits: number;
  busy: boolean;
  lastBusy: number;
  syncs: Map<number, () => void>;
  /** Told to stop (a restart or the daemon stopping): its exit is expected. */
  retired: boolean;
}

export class HitWorkers {
  private readonly workers = new Set<Worker>();
  private stopping = false;
  private seq = 0;
  private restarts: number[] = [];

  constructor(private readonly opts: HitWorkersOptions) {}

  start(): void {
    for (let i = 0; i < this.opts.workers(); i++) this.spawn();
  }

  private spawn(): void {
    // The listening socket goes to the worker as a plain descriptor, which it wraps in a server of
    // its own with its handler in place. (Sending the net.Server over IPC, Node's documented way,
    // lost connections that were waiting when the worker took over: 3 of 20 in a test here.)
    const fd = (this.opts.server as net.Server & { _handle?: { fd?: number } })._handle?.fd;
    if (fd === undefined || fd < 0) {
      this.opts.log.warn('cannot hand the listening socket to hit workers: the daemon answers alone');
      this.stopping = true;
      return;
    }
    const child = fork(WORKER_MAIN, [], {
      serialization: 'advanced',
      stdio: ['ignore', 'ignore', 'ignore', 'ipc', fd],
      env: process.env,
    });
    const worker: Worker = { child, hits: 0, busy: false, lastBusy: 0, syncs: new Map(), retired: false };
    this.workers.add(worker);
    child.on('message', (msg: FromWorker) => this.onMessage(worker, msg));
    child.on('error', (err) => this.opts.log.warn(`hit worker: ${err.message}`));
    child.on('exit', (code, signal) => {
      this.workers.delete(worker);
      for (const done of worker.syncs.values()) done();
      if (this.stopping || worker.retired) return;
      this.opts.log.warn(`hit worker ${child.pid} exited (${signal ?? code}); the daemon answers its share`);
      const now = Date.now();
      this.restarts = this.restarts.filter((t) => now - t < 60_000);
      if (this.restarts.length < MAX_RESTARTS_PER_MINUTE) {
        this.restarts.push(now);
        setTimeout(() => !this.stopping && this.spawn(), 1000).unref();
      }
    });
    const serve: ToWorker = {
      type: 'serve',
      callerUmask: this.opts.callerUmask,
      selfPaths: this.opts.selfPaths,
      configId: this.opts.configId(),
    };
    child.send(serve);
  }

  private onMessage(worker: Worker, msg: FromWorker): void {
    switch (msg.type) {
      case 'call': {
        const body = Buffer.from(msg.body.buffer, msg.body.byteOffset, msg.body.byteLength);
        void this.opts.answer(body).then((data) => {
          if (worker.child.connected)
            worker.child.send({ type: 'answer', id: msg.id, data } satisfies ToWorker);
        });
        return;
      }
      case 'stats':
        this.take(worker, msg.delta);
        worker.busy = msg.busy;
        worker.lastBusy = Date.now();
        return;
      case 'synced': {
        this.take(worker, msg.delta);
        const done = worker.syncs.get(msg.seq);
        worker.syncs.delete(msg.seq);
        done?.();
        return;
      }
    }
  }

  private take(worker: Worker, delta: StatsData | null): void {
    if (!delta) return;
    worker.hits += delta.hitsDirect;
    this.opts.count(delta);
  }

  /** Resolves when every worker has sent the counts it holds (or did not answer within 2 s). */
  async sync(): Promise<void> {
    const seq = this.seq++;
    await Promise.all(
      [...this.workers].map(
        (w) =>
          new Promise<void>((resolve) => {
            if (!w.child.connected) return resolve();
            const timer = setTimeout(resolve, SYNC_TIMEOUT_MS);
            w.syncs.set(seq, () => {
              clearTimeout(timer);
              resolve();
            });
            w.child.send({ type: 'sync', seq } satisfies ToWorker);
          }),
      ),
    );
  }

  /** Whether a worker answered a call within the last `ms` or is answering one now. */
  activeWithin(ms: number): boolean {
    const since = Date.now() - ms;
    return [...this.workers].some((w) => w.busy || w.lastBusy > since);
  }

  /** Each worker's pid and the hits it answered (for `--show-stats`). */
  list(): { pid: number; hits: number }[] {
    return [...this.workers].filter((w) => !w.retired).map((w) => ({ pid: w.child.pid ?? 0, hits: w.hits }));
  }

  /** New workers for new settings (none when the setting is 0): the old ones finish their calls and exit. */
  restart(): void {
    // Retiring workers stay in the set until they exit: a sync still collects their counts.
    for (const w of [...this.workers]) void this.retire(w);
    this.start();
  }

  private retire(w: Worker): Promise<void> {
    w.retired = true;
    return new Promise((resolve) => {
      if (w.child.exitCode !== null || w.child.signalCode !== null) return resolve();
      const timer = setTimeout(() => w.child.kill('SIGKILL'), STOP_TIMEOUT_MS);
      w.child.once('exit', () => {
        clearTimeout(timer);
        resolve();
      });
      // Its last counts arrive before it exits, and are taken as they come.
      if (w.child.connected) w.child.send({ type: 'stop' } satisfies ToWorker);
      else w.child.kill('SIGTERM');
    });
  }

  /** Stops every worker: each finishes the calls it holds (handing misses on) and exits. */
  async stop(): Promise<void> {
    this.stopping = true;
    const all = [...this.workers];
    await Promise.all(all.map((w) => this.retire(w)));
  }
}
