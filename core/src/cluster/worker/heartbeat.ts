import os from 'node:os';
import type { Logger } from '../../log.js';
import { API, type WorkerHeartbeat } from '../api.js';
import { HttpTransport } from '../http-transport.js';
import { CertificateMismatch, type Fingerprint } from '../tls/pinned-agent.js';
import { cpuModel } from './cpu-model.js';

export interface HeartbeatOptions {
  readonly schedulerUrl: string;
  /** The worker token; asked before every heartbeat, so that a rotated token is picked up. */
  readonly token: () => string;
  /** Allow a plain http:// scheduler_url. */
  readonly insecure?: boolean;
  /** The scheduler's certificate fingerprint to pin. */
  readonly pin?: Fingerprint;
  /** PEM CAs trusted for the scheduler instead of the system's. */
  readonly ca?: string;
  readonly log: Logger;
  /** The current state to report. */
  readonly info: () => WorkerHeartbeat;
}

/** What the scheduler's refusal means for this worker's operator. */
function refusal(status: number, message: string | undefined): string {
  const said = `the scheduler answered ${status}${message ? ` (${message})` : ''}`;
  if (status === 401)
    return `${said}: it does not accept this worker's token; make a new one with \`kiln-dist auth rotate-worker-token\` from the scheduler's secret key`;
  return said;
}

/** A failed connection in words, with what to check. */
function why(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  if (err instanceof CertificateMismatch)
    return "the scheduler's certificate is not the one scheduler_cert_sha256 pins (run `kiln-dist tls fingerprint` on the scheduler)";
  if (e.code === 'ECONNREFUSED')
    return 'connection refused: is the scheduler running, and is scheduler_url right?';
  if (e.code === 'ENOTFOUND' || e.code === 'EAI_AGAIN')
    return `cannot resolve the host name of scheduler_url (${e.code})`;
  if (e.name === 'TimeoutError' || e.name === 'AbortError') return 'no answer within 10 s';
  return e.message;
}

/** A lost scheduler is tried again this often for the first minute, then every 5 s at most. */
const RETRY_MS = 1000;
const SLOW_RETRY_MS = 5000;
const FAST_RETRIES = 60;

/**
 * Tells the scheduler this worker is alive, every interval the scheduler asks for. A failed
 * heartbeat is retried within a second: a restarted scheduler learns the worker again from it.
 * When the connection to the scheduler closes (it stopped, or was killed) a heartbeat goes at once
 * rather than at the next tick, so that a restarted scheduler has its workers back within about a
 * second, not a heartbeat interval (7.5 s by default) later.
 */
export class Heartbeat {
  private timer: NodeJS.Timeout | undefined;
  /** When the timer fires. */
  private dueMs = Number.POSITIVE_INFINITY;
  private intervalMs = 1000;
  private stopped = false;
  private lastError = '';
  private failures = 0;
  private lastBeatMs = 0;
  private readonly http: HttpTransport;
  private token: string;

  constructor(private readonly opts: HeartbeatOptions) {
    this.http = new HttpTransport({
      insecure: opts.insecure,
      ca: opts.ca,
      onConnectionClose: () => this.connectionClosed(),
    });
    this.token = opts.token();
  }

  private post(path: string, body: unknown) {
    return this.http.exchange(`${this.opts.schedulerUrl}${API}${path}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${this.token}`, 'content-type': 'application/json' },
      body: Buffer.from(JSON.stringify(body)),
      timeoutMs: 10_000,
      ...(this.opts.pin ? { pin: this.opts.pin } : {}),
    });
  }

  /** Sends the first heartbeat; resolves with whether the scheduler accepted it. */
  async start(): Promise<boolean> {
    const ok = await this.beat();
    this.schedule(this.nextDelay(ok));
    return ok;
  }

  private nextDelay(ok: boolean): number {
    if (ok) return this.intervalMs;
    return Math.min(this.intervalMs, this.failures <= FAST_RETRIES ? RETRY_MS : SLOW_RETRY_MS);
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    clearTimeout(this.timer);
    this.dueMs = Date.now() + delayMs;
    this.timer = setTimeout(async () => {
      this.dueMs = Number.POSITIVE_INFINITY;
      this.schedule(this.nextDelay(await this.beat()));
    }, delayMs);
    this.timer.unref();
  }

  /**
   * The scheduler may be gone: beat now, but not more than once a second, so that a server that
   * closes every connection after answering does not turn heartbeats into a loop.
   */
  private connectionClosed(): void {
    if (this.stopped) return;
    const at = Math.max(Date.now(), this.lastBeatMs + RETRY_MS);
    if (at < this.dueMs) this.schedule(at - Date.now());
  }

  /** One heartbeat now; resolves with whether the scheduler accepted it. */
  async beat(): Promise<boolean> {
    this.lastBeatMs = Date.now();
    try {
      this.token = this.opts.token();
      const res = await this.post('/workers/heartbeat', this.opts.info());
      let body: { heartbeatIntervalMs?: number; message?: string } = {};
      try {
        body = JSON.parse(res.body.toString());
      } catch {}
      if (res.status !== 200) throw new Error(refusal(res.status, body.message));
      if (typeof body.heartbeatIntervalMs === 'number')
        this.intervalMs = Math.max(100, body.heartbeatIntervalMs);
      if (this.lastError) this.opts.log.warn('scheduler reachable again');
      this.lastError = '';
      this.failures = 0;
      return true;
    } catch (err) {
      const msg = why(err);
      if (msg !== this.lastError)
        this.opts.log.warn(
          `heartbeat to ${this.opts.schedulerUrl} failed: ${msg}; retrying every second (every 5 s after a minute)`,
        );
      this.lastError = msg;
      this.failures++;
      return false;
    }
  }

  /** Frees the job's slot on the scheduler now; a lost message is made good by the next heartbeats. */
  async finished(jobId: string, workerId: string, failed: boolean): Promise<void> {
    try {
      await this.post(`/jobs/${encodeURIComponent(jobId)}/finished`, { workerId, failed });
    } catch (err) {
      this.opts.log.debug(`cannot report job ${jobId} finished: ${(err as Error).message}`);
    }
  }

  /** No more heartbeats; the connection stays for `leave` and `finished`. */
  pause(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
  }

  /**
   * Signs off: the scheduler takes this worker out of its pool at once (no waiting for
   * worker_timeout). Resolves with whether it answered; a failure is logged, and the scheduler
   * then drops the worker when its heartbeats stop, as for any lost worker.
   */
  async leave(id: string): Promise<boolean> {
    this.pause();
    try {
      this.token = this.opts.token();
      const res = await this.post('/workers/leave', { id });
      if (res.status === 204) return true;
      let message: string | undefined;
      try {
        message = (JSON.parse(res.body.toString()) as { message?: string }).message;
      } catch {}
      this.opts.log.warn(
        `signing off: ${refusal(res.status, message)}; it drops this worker after worker_timeout`,
      );
    } catch (err) {
      this.opts.log.warn(
        `signing off: ${this.opts.schedulerUrl}: ${why(err)}; it drops this worker after worker_timeout`,
      );
    }
    return false;
  }

  stop(): void {
    this.pause();
    this.http.close();
  }
}

export function machineInfo(): Pick<WorkerHeartbeat, 'os' | 'cpuModel' | 'cpus' | 'memoryBytes'> {
  return {
    os: `${os.type()} ${os.release()}`,
    cpuModel: cpuModel(),
    cpus: os.availableParallelism(),
    memoryBytes: os.totalmem(),
  };
}
