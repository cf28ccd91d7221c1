import os from 'node:os';
import { request } from 'undici';
import type { Logger } from '../../log.js';
import { API, type WorkerHeartbeat } from '../api.js';

export interface HeartbeatOptions {
  readonly schedulerUrl: string;
  readonly token: string;
  readonly log: Logger;
  /** The current state to report. */
  readonly info: () => WorkerHeartbeat;
}

/**
 * Tells the scheduler this worker is alive, every interval the scheduler asks for. A failed
 * heartbeat is retried on the next tick: a restarted scheduler learns the worker again from it.
 */
export class Heartbeat {
  private timer: NodeJS.Timeout | undefined;
  private intervalMs = 1000;
  private stopped = false;
  private lastError = '';

  constructor(private readonly opts: HeartbeatOptions) {}

  /** Sends the first heartbeat; resolves with whether the scheduler accepted it. */
  async start(): Promise<boolean> {
    const ok = await this.beat();
    this.schedule();
    return ok;
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(async () => {
      await this.beat();
      this.schedule();
    }, this.intervalMs);
    this.timer.unref();
  }

  /** One heartbeat now; resolves with whether the scheduler accepted it. */
  async beat(): Promise<boolean> {
    try {
      const res = await request(`${this.opts.schedulerUrl}${API}/workers/heartbeat`, {
        method: 'POST',
        headers: { authorization: `Bearer ${this.opts.token}`, 'content-type': 'application/json' },
        body: JSON.stringify(this.opts.info()),
        headersTimeout: 10_000,
        bodyTimeout: 10_000,
      });
      const body = (await res.body.json()) as { heartbeatIntervalMs?: number; message?: string };
      if (res.statusCode !== 200)
        throw new Error(`scheduler answered ${res.statusCode}: ${body.message ?? ''}`);
      if (typeof body.heartbeatIntervalMs === 'number')
        this.intervalMs = Math.max(100, body.heartbeatIntervalMs);
      if (this.lastError) this.opts.log.warn('scheduler reachable again');
      this.lastError = '';
      return true;
    } catch (err) {
      const msg = (err as Error).message;
      if (msg !== this.lastError) this.opts.log.warn(`heartbeat to ${this.opts.schedulerUrl} failed: ${msg}`);
      this.lastError = msg;
      return false;
    }
  }

  /** Frees the job's slot on the scheduler now; a lost message is made good by the next heartbeats. */
  async finished(jobId: string, workerId: string, failed: boolean): Promise<void> {
    try {
      const res = await request(
        `${this.opts.schedulerUrl}${API}/jobs/${encodeURIComponent(jobId)}/finished`,
        {
          method: 'POST',
          headers: { authorization: `Bearer ${this.opts.token}`, 'content-type': 'application/json' },
          body: JSON.stringify({ workerId, failed }),
          headersTimeout: 10_000,
          bodyTimeout: 10_000,
        },
      );
      await res.body.dump();
    } catch (err) {
      this.opts.log.debug(`cannot report job ${jobId} finished: ${(err as Error).message}`);
    }
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
  }
}

export function machineInfo(): Pick<WorkerHeartbeat, 'os' | 'cpuModel' | 'cpus' | 'memoryBytes'> {
  return {
    os: `${os.type()} ${os.release()}`,
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    cpus: os.availableParallelism(),
    memoryBytes: os.totalmem(),
  };
}
