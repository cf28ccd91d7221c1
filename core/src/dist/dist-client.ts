/**
 * The client's side of the cluster protocol (used by the daemon and `kiln --dist-*`), over
 * node:http with keep-alive connections. Not undici: importing it took ~75 ms of CPU (more under
 * load) at every start of a daemon with a cluster, before its first compile could go out.
 * Every failure is a DistError with a short reason for the stats.
 */
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { type AllocateResponse, API, type ClusterStatus, type ToolchainRef } from './api.js';
import type { DistConfig } from './client-config.js';
import {
  decodeFrame,
  encodeFrame,
  JOB_CONTENT_TYPE,
  type JobRequestHeader,
  type JobResultHeader,
} from './wire.js';

export class DistError extends Error {
  constructor(
    /** Short, stable, for stats: "scheduler unreachable", "worker unreachable", "upload refused"… */
    readonly reason: string,
    detail: string,
    /** The worker answered that it lacks the toolchain. */
    readonly toolchainMissing = false,
  ) {
    super(`${reason}: ${detail}`);
  }
}

export interface JobResult {
  readonly header: JobResultHeader;
  readonly stdout: Buffer;
  readonly stderr: Buffer;
  readonly outputs: ReadonlyMap<string, Buffer>;
}

interface Exchange {
  readonly method: 'GET' | 'POST' | 'PUT';
  readonly headers: Readonly<Record<string, string>>;
  readonly body?: Buffer | fs.ReadStream;
  /** For the whole exchange, connecting included. */
  readonly timeoutMs: number;
}

interface Answer {
  readonly status: number;
  readonly body: Buffer;
}

const SOCKETS_PER_HOST = 32;

/** A kept-alive connection was reset as a request went out on it. */
class StaleConnection extends Error {}

export class DistClient {
  private readonly agents = {
    'http:': new http.Agent({ keepAlive: true, maxSockets: SOCKETS_PER_HOST }),
    'https:': new https.Agent({ keepAlive: true, maxSockets: SOCKETS_PER_HOST }),
  };

  constructor(private readonly config: DistConfig) {}

  /**
   * One request on a kept-alive connection; rejects on network errors, timeouts and cut answers.
   * A connection the server closed just as it was reused never delivered the request: that one is
   * sent again on a fresh connection (a file upload, whose stream is spent, is not).
   */
  private async exchange(url: string, init: Exchange): Promise<Answer> {
    try {
      return await this.send(url, init);
    } catch (err) {
      if (!(err instanceof StaleConnection) || init.body instanceof fs.ReadStream) throw err;
      return this.send(url, init);
    }
  }

  private send(url: string, init: Exchange): Promise<Answer> {
    const target = new URL(url);
    const agent = this.agents[target.protocol as keyof DistClient['agents']];
    if (!agent) return Promise.reject(new Error(`unsupported protocol ${target.protocol}`));
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
      req.on('error', (err: NodeJS.ErrnoException) => {
        reject(req.reusedSocket && err.code === 'ECONNRESET' ? new StaleConnection(err.message) : err);
      });
      if (init.body instanceof fs.ReadStream) {
        init.body.on('error', (err) => req.destroy(err));
        init.body.pipe(req);
      } else req.end(init.body);
    });
  }

  private clientAuth(): Record<string, string> {
    return this.config.auth.type === 'token' ? { authorization: `Bearer ${this.config.auth.token}` } : {};
  }

  private async scheduler<T>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<T> {
    let res: Answer;
    try {
      res = await this.exchange(`${this.config.scheduler_url}${API}${path}`, {
        method,
        headers: { ...this.clientAuth(), ...(body ? { 'content-type': 'application/json' } : {}) },
        body: body ? Buffer.from(JSON.stringify(body)) : undefined,
        timeoutMs: this.config.connect_timeout * 1000,
      });
    } catch (err) {
      throw new DistError('scheduler unreachable', `${this.config.scheduler_url}: ${(err as Error).message}`);
    }
    const text = res.body.toString();
    if (res.status === 401 || res.status === 403) {
      throw new DistError('scheduler refused credentials', `${res.status} ${text}`);
    }
    if (res.status >= 300) throw new DistError('scheduler error', `${res.status} ${text}`);
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new DistError('scheduler error', 'answer is not JSON');
    }
  }

  allocate(toolchain: ToolchainRef): Promise<AllocateResponse> {
    return this.scheduler('POST', '/jobs', { toolchain });
  }

  status(): Promise<ClusterStatus> {
    return this.scheduler('GET', '/status');
  }

  probeToken(workerId: string): Promise<{ jobId: string; url: string; jobToken: string }> {
    return this.scheduler('POST', `/workers/${encodeURIComponent(workerId)}/probe-token`);
  }

  private async worker(
    url: string,
    path: string,
    init: {
      method: Exchange['method'];
      token?: string;
      type?: string;
      body?: Exchange['body'];
      length?: number;
      timeoutMs: number;
    },
  ): Promise<Answer> {
    try {
      return await this.exchange(`${url}${API}${path}`, {
        method: init.method,
        headers: {
          ...(init.token ? { authorization: `Bearer ${init.token}` } : {}),
          ...(init.type ? { 'content-type': init.type } : {}),
          ...(init.length !== undefined ? { 'content-length': String(init.length) } : {}),
        },
        body: init.body,
        timeoutMs: init.timeoutMs,
      });
    } catch (err) {
      throw new DistError('worker unreachable', `${url}: ${(err as Error).message}`);
    }
  }

  async health(url: string): Promise<{ id: string; hostTriple: string; version: string }> {
    const res = await this.worker(url, '/health', {
      method: 'GET',
      timeoutMs: this.config.connect_timeout * 1000,
    });
    if (res.status !== 200) throw new DistError('worker error', `health answered ${res.status}`);
    return JSON.parse(res.body.toString());
  }

  async ping(url: string, jobId: string, token: string): Promise<void> {
    const res = await this.worker(url, `/jobs/${encodeURIComponent(jobId)}/ping`, {
      method: 'POST',
      token,
      timeoutMs: this.config.connect_timeout * 1000,
    });
    if (res.status !== 200)
      throw new DistError('worker refused credentials', `${res.status} ${res.body.toString()}`);
  }

  async uploadToolchain(
    url: string,
    token: string,
    kind: string,
    digest: string,
    archive: string,
  ): Promise<void> {
    const size = fs.statSync(archive).size;
    const res = await this.worker(url, `/toolchains/${digest}?kind=${encodeURIComponent(kind)}`, {
      method: 'PUT',
      token,
      type: 'application/octet-stream',
      body: fs.createReadStream(archive),
      length: size,
      timeoutMs: this.config.job_timeout * 1000,
    });
    if (res.status !== 201)
      throw new DistError('toolchain upload refused', `${res.status} ${res.body.toString()}`);
  }

  async run(
    url: string,
    token: string,
    jobId: string,
    header: JobRequestHeader,
    inputs: readonly Buffer[],
  ): Promise<JobResult> {
    const res = await this.worker(url, `/jobs/${encodeURIComponent(jobId)}/run`, {
      method: 'POST',
      token,
      type: JOB_CONTENT_TYPE,
      body: encodeFrame(header, inputs),
      timeoutMs: this.config.job_timeout * 1000 + 5000,
    });
    if (res.status === 409) throw new DistError('toolchain missing on worker', res.body.toString(), true);
    if (res.status !== 200) {
      let code = '';
      try {
        code = (JSON.parse(res.body.toString()) as { code?: string }).code ?? '';
      } catch {}
      throw new DistError(
        code.startsWith('KILN_ERR_SANDBOX') ? 'sandbox failure' : 'worker error',
        `${res.status} ${res.body.toString()}`,
      );
    }
    let frame: ReturnType<typeof decodeFrame<JobResultHeader>>;
    try {
      frame = decodeFrame<JobResultHeader>(res.body);
    } catch (err) {
      throw new DistError('worker error', `malformed result: ${(err as Error).message}`);
    }
    const { header: h, blobs } = frame;
    if (!Array.isArray(h.outputs) || blobs.length !== h.outputs.length + 2)
      throw new DistError('worker error', 'result blobs do not match');
    return {
      header: h,
      stdout: blobs[0]!,
      stderr: blobs[1]!,
      outputs: new Map(h.outputs.map((p, i) => [p, blobs[i + 2]!])),
    };
  }

  close(): Promise<void> {
    for (const agent of Object.values(this.agents)) agent.destroy();
    return Promise.resolve();
  }
}
