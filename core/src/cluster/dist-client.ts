/**
 * The client's side of the cluster protocol (used by the daemon and `kiln --dist-*`), over
 * HttpTransport. Every failure is a DistError with a short reason for the stats.
 */
import fs from 'node:fs';
import os from 'node:os';
import { type AllocateResponse, API, type ClusterStatus, type ToolchainRef } from './api.js';
import type { DistConfig } from './client-config.js';
import { type Answer, type Exchange, HttpTransport, InsecureUrl } from './http-transport.js';
import { CertificateMismatch, type Fingerprint } from './tls/pinned-agent.js';
import {
  decodeFrame,
  encodeFrame,
  JOB_CONTENT_TYPE,
  type JobRequestHeader,
  type JobResultHeader,
} from './wire.js';

export interface DistErrorFacts {
  /** The worker answered that it lacks the toolchain. */
  readonly toolchainMissing?: boolean;
  /**
   * The worker, not the job, failed: it refused the connection, the connection broke before the
   * answer ended, or it answered 5xx (a sandbox failure excepted). Another worker may do the job.
   */
  readonly workerLost?: boolean;
  /** The HTTP status, when there was an answer. */
  readonly status?: number;
}

export class DistError extends Error {
  readonly toolchainMissing: boolean;
  readonly workerLost: boolean;
  readonly status: number | undefined;

  constructor(
    /** Short, stable, for stats: "scheduler unreachable", "worker unreachable", "upload refused"… */
    readonly reason: string,
    detail: string,
    facts: DistErrorFacts = {},
  ) {
    super(`${reason}: ${detail}`);
    this.toolchainMissing = facts.toolchainMissing ?? false;
    this.workerLost = facts.workerLost ?? false;
    this.status = facts.status;
  }
}

/**
 * A refusal as a person reads it: the status and the server's `message` from its JSON answer
 * (`401: client: missing or invalid credentials`), not the JSON itself.
 */
export function answered(res: Answer): string {
  const text = res.body.toString();
  try {
    const { message } = JSON.parse(text) as { message?: unknown };
    if (typeof message === 'string') return `${res.status}: ${message}`;
  } catch {}
  return text ? `${res.status}: ${text.slice(0, 200)}` : String(res.status);
}

/**
 * A request that ran out of its time (AbortSignal.timeout). A worker that holds a job that long
 * is alive but slow, or the job is: sending it elsewhere would double the wait.
 */
const timedOut = (err: Error) => err.name === 'AbortError' || err.name === 'TimeoutError';

/** The stats reason for a failed connection: a TLS refusal is told apart from a network failure. */
function unreachable(who: 'scheduler' | 'worker', err: unknown): string {
  if (err instanceof CertificateMismatch) return `${who} certificate mismatch`;
  if (err instanceof InsecureUrl) return `${who} is plain http`;
  if (
    (err as NodeJS.ErrnoException).code?.startsWith?.('ERR_TLS') ||
    /certificate/i.test((err as Error).message)
  )
    return `${who} certificate refused`;
  return `${who} unreachable`;
}

export interface JobResult {
  readonly header: JobResultHeader;
  readonly stdout: Buffer;
  readonly stderr: Buffer;
  readonly outputs: ReadonlyMap<string, Buffer>;
}

export class DistClient {
  private readonly http: HttpTransport;
  /**
   * Worker URL → the certificate fingerprint the scheduler vouched for (from allocations, the
   * status and probe tokens): workers are reached only with that pin.
   */
  private readonly workerPins = new Map<string, Fingerprint>();
  /** This client's name to the scheduler, and whether the scheduler takes one. */
  private readonly name: string;
  private sendName = true;

  constructor(private readonly config: DistConfig) {
    this.name =
      config.client_name ??
      (os
        .hostname()
        .replace(/[^A-Za-z0-9._@:/-]/g, '_')
        .slice(0, 100) ||
        'client');
    this.http = new HttpTransport({ insecure: config.insecure, ca: config.scheduler_ca });
  }

  private learnPin(url: string, certSha256: string | undefined): void {
    if (certSha256) this.workerPins.set(url, certSha256);
    else this.workerPins.delete(url);
  }

  private exchange(url: string, init: Exchange): Promise<Answer> {
    return this.http.exchange(url, init);
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
        ...(this.config.scheduler_cert_sha256 ? { pin: this.config.scheduler_cert_sha256 } : {}),
      });
    } catch (err) {
      throw new DistError(
        unreachable('scheduler', err),
        `${this.config.scheduler_url}: ${(err as Error).message}`,
      );
    }
    const text = res.body.toString();
    if (res.status === 401 || res.status === 403) {
      throw new DistError(
        'scheduler refused credentials',
        `${answered(res)}; check the client token ([dist.auth] token or token_file, or KILN_DIST_CLIENT_TOKEN) against the scheduler's [client_auth]`,
      );
    }
    if (res.status >= 300) throw new DistError('scheduler error', answered(res), { status: res.status });
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new DistError('scheduler error', 'answer is not JSON');
    }
  }

  /**
   * A worker for a job, none of `exclude` (sent only when not empty: older schedulers refuse the
   * field), asked in this client's name; a scheduler too old for the name (400) is asked without.
   */
  async allocate(toolchain: ToolchainRef, exclude: readonly string[] = []): Promise<AllocateResponse> {
    const body = exclude.length ? { toolchain, exclude } : { toolchain };
    let answer: AllocateResponse;
    if (this.sendName) {
      try {
        answer = await this.scheduler<AllocateResponse>('POST', '/jobs', { ...body, client: this.name });
      } catch (err) {
        if (!(err instanceof DistError && err.status === 400)) throw err;
        answer = await this.scheduler<AllocateResponse>('POST', '/jobs', body);
        // Only now is it known that the name was what this scheduler refused.
        this.sendName = false;
      }
    } else answer = await this.scheduler<AllocateResponse>('POST', '/jobs', body);
    if (answer.status === 'assigned') this.learnPin(answer.worker.url, answer.worker.certSha256);
    return answer;
  }

  async status(): Promise<ClusterStatus> {
    const status = await this.scheduler<ClusterStatus>('GET', '/status');
    for (const w of status.pools.flatMap((p) => p.workers)) this.learnPin(w.url, w.certSha256);
    return status;
  }

  async probeToken(workerId: string): Promise<{ jobId: string; url: string; jobToken: string }> {
    const probe = await this.scheduler<{ jobId: string; url: string; jobToken: string; certSha256?: string }>(
      'POST',
      `/workers/${encodeURIComponent(workerId)}/probe-token`,
    );
    this.learnPin(probe.url, probe.certSha256);
    return probe;
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
        ...(this.workerPins.has(url) ? { pin: this.workerPins.get(url)! } : {}),
      });
    } catch (err) {
      // A certificate refusal is not a lost worker: the job is not sent to another one.
      const reason = unreachable('worker', err);
      throw new DistError(reason, `${url}: ${(err as Error).message}`, {
        workerLost: reason === 'worker unreachable' && !timedOut(err as Error),
      });
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
    if (res.status !== 200) throw new DistError('worker refused credentials', answered(res));
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
      throw new DistError('toolchain upload refused', answered(res), {
        status: res.status,
        workerLost: res.status >= 500,
      });
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
    if (res.status === 409)
      throw new DistError('toolchain missing on worker', answered(res), {
        toolchainMissing: true,
        status: 409,
      });
    // A worker that cannot find or install a toolchain named by version: another one may have it.
    if (res.status === 422)
      throw new DistError('toolchain unavailable on worker', answered(res), {
        status: 422,
        workerLost: true,
      });
    if (res.status !== 200) {
      let code = '';
      try {
        code = (JSON.parse(res.body.toString()) as { code?: string }).code ?? '';
      } catch {}
      // A sandbox failure comes from a live worker that could not run this job (its output over
      // the limit, say): most such jobs would fail on any worker, so they are not sent to another.
      const sandbox = code.startsWith('KILN_ERR_SANDBOX');
      throw new DistError(sandbox ? 'sandbox failure' : 'worker error', answered(res), {
        status: res.status,
        workerLost: res.status >= 500 && !sandbox,
      });
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
    this.http.close();
    return Promise.resolve();
  }
}
