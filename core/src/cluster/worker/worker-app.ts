/**
 * The worker's HTTP server. Clients come with a job token the scheduler minted for this worker:
 * they upload a toolchain once, then run jobs in the sandbox. Everything they send is hostile
 * until checked.
 */

import { createSecretKey, randomBytes } from 'node:crypto';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { DEFAULT_JOB_LIMITS, type JobLimits, type Sandbox, type SandboxResult } from '@kiln/plugins';
import { Ajv } from 'ajv';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import {
  KILN_ERR_AUTH_FORBIDDEN,
  KILN_ERR_AUTH_REQUIRED,
  KILN_ERR_DIST_BAD_REQUEST,
  KILN_ERR_DIST_NOT_FOUND,
  KILN_ERR_DIST_TOO_LARGE,
  KILN_ERR_DIST_UNAVAILABLE,
  KILN_ERR_DIST_UNSUPPORTED_TYPE,
} from '../../errors.js';
import { API, digestParams, jobIdParams, toolchainQuery } from '../api.js';
import { bearerOf, type JobGrant, verifyJobToken } from '../auth.js';
import { errorReplies } from '../http-errors.js';
import { serverOptions } from '../http-server.js';
import { METRICS_CONTENT_TYPE, sameToken } from '../metrics.js';
import type { LogStream } from '../server-log.js';
import {
  decodeFrame,
  frameStream,
  JOB_CONTENT_TYPE,
  type JobRequestHeader,
  type JobResultHeader,
  jobRequestSchema,
} from '../wire.js';
import { JobGrants, type TokenUse } from './job-grants.js';
import { JobSlots } from './job-slots.js';
import type { ToolchainStore } from './toolchain-store.js';
import { workerMetrics } from './worker-metrics.js';

export interface WorkerAppOptions {
  readonly id: string;
  readonly hostTriple: string;
  readonly version: string;
  readonly sandbox: Sandbox;
  readonly store: ToolchainStore;
  readonly maxJobs: number;
  readonly jobTimeoutMs: number;
  readonly maxToolchainBytes: number;
  /** Largest job request (header and inputs); default 256 MiB. */
  readonly maxJobInputBytes?: number;
  /** How long a client may take to send one whole request; default 10 minutes. */
  readonly requestTimeoutMs?: number;
  /** What each job may use (worker.toml `[limits]`); the sandbox enforces them. */
  readonly limits?: JobLimits;
  /** Called when a job ends, to tell the scheduler its slot is free. */
  readonly onJobDone?: (jobId: string, failed: boolean) => void;
  /** Called when an uploaded toolchain is stored, to tell the scheduler this worker holds it. */
  readonly onToolchainStored?: (digest: string) => void;
  readonly logger?: boolean;
  readonly logLevel?: string;
  /** Append the JSON log to this file instead of stdout. */
  readonly logFile?: string;
  /** Where log lines go instead (server-log.ts: a file reopened on SIGHUP, or the journal); wins over logFile. */
  readonly logStream?: LogStream;
  /** Serve HTTPS with this certificate and key (PEM); plain HTTP without. */
  readonly tls?: { readonly cert: string; readonly key: string };
  /** The bearer token /metrics wants (worker.toml metrics_token_file); without one it is off. */
  readonly metricsToken?: () => string;
}

export interface WorkerApp {
  readonly app: FastifyInstance;
  /** Base64url secret the scheduler signs this worker's job tokens with (sent in heartbeats). */
  readonly jobKey: string;
  /** Job ids this worker holds now: an upload or a run in flight. */
  heldJobs(): string[];
  /** Toolchain archives received since start, stored or not (a repeated upload counts again). */
  toolchainUploads(): number;
}

/** How long a client may take to send one request, headers and body (toolchain uploads included). */
const DEFAULT_REQUEST_TIMEOUT_MS = 10 * 60_000;
const DEFAULT_MAX_JOB_INPUT = 256 * 1024 * 1024;
/** A client that reads none of a job's answer for this long is cut off. */
const RESPONSE_IDLE_MS = 60_000;
const WATCHDOG_MS = 5_000;
const USED = 'the job token was used already: one token runs one job';

/** Which token a route wants: "probe" also accepts a job token. */
type Want = 'job' | 'probe';

export function createWorkerApp(opts: WorkerAppOptions): WorkerApp {
  const jobKey = randomBytes(32).toString('base64url');
  const key = createSecretKey(Buffer.from(jobKey, 'base64url'));
  const slots = new JobSlots(opts.maxJobs, opts.maxJobs * 2);
  const grants = new JobGrants();
  /** Jobs with a request in flight (an upload or a run), by how many. */
  const inFlight = new Map<string, number>();
  const grantOf = new WeakMap<FastifyRequest, JobGrant>();
  let uploads = 0;
  const maxJobInput = opts.maxJobInputBytes ?? DEFAULT_MAX_JOB_INPUT;
  const answerDeadlineMs = opts.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
  const metrics = workerMetrics({
    id: opts.id,
    pool: opts.hostTriple,
    version: opts.version,
    maxJobs: opts.maxJobs,
    running: () => inFlight.size,
  });
  const validateJob = new Ajv({ allErrors: false }).compile<JobRequestHeader>(jobRequestSchema);
  const app = Fastify({
    // Unknown fields are an error, not silently dropped (fastify's default).
    ajv: { customOptions: { removeAdditional: false } },
    logger: opts.logger
      ? {
          level: opts.logLevel ?? 'warn',
          ...(opts.logStream ? { stream: opts.logStream } : opts.logFile ? { file: opts.logFile } : {}),
        }
      : false,
    bodyLimit: 64 * 1024,
    ...serverOptions(opts.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS, opts.tls),
  }) as unknown as FastifyInstance;
  app.register(errorReplies);
  // Only JSON (and the binary types below) are accepted: anything else is a 415.
  app.removeContentTypeParser('text/plain');
  app.addContentTypeParser(
    JOB_CONTENT_TYPE,
    { parseAs: 'buffer', bodyLimit: maxJobInput },
    (_req, body, done) => done(null, body),
  );
  // Toolchains stream to disk while hashing; the store enforces the size limit.
  app.addContentTypeParser('application/octet-stream', (_req, payload, done) => done(null, payload));

  /** Requests using job tokens in flight, by use: capped so that tokens cannot pile bodies up. */
  const busy = { upload: 0, run: 0 };
  const maxBusy = { upload: opts.maxJobs * 2, run: opts.maxJobs * 3 };

  /**
   * Checks the job token before a byte of the body is read (an onRequest hook): a request without
   * a valid one is answered 401 and its connection closed, so its body is never received. A body
   * is received only for a token whose job has not run, with no other such request in flight.
   */
  const requireToken =
    (want: Want, use?: { readonly kind: TokenUse; readonly type: string }) =>
    async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
      const token = bearerOf(request.headers.authorization);
      const grant = token ? await verifyJobToken(key, opts.id, token) : undefined;
      if (!grant) throw KILN_ERR_AUTH_REQUIRED('job token');
      if (grant.scope !== 'job' && want === 'job')
        throw KILN_ERR_AUTH_FORBIDDEN('a probe token only pings the worker');
      const params = request.params as { jobId?: string; digest?: string };
      if (params.jobId !== undefined && params.jobId !== grant.jobId)
        throw KILN_ERR_AUTH_FORBIDDEN('the job token is for another job');
      if (params.digest !== undefined && want === 'job' && params.digest !== grant.toolchain)
        throw KILN_ERR_AUTH_FORBIDDEN('the job token is for another toolchain');
      if (want === 'job' && grants.ran(grant.jobId)) throw KILN_ERR_AUTH_FORBIDDEN(USED);
      grantOf.set(request, grant);
      if (!use) return;
      if (request.headers['content-type'] !== use.type) throw KILN_ERR_DIST_UNSUPPORTED_TYPE(use.type);
      const length = Number(request.headers['content-length'] ?? 0);
      const limit = use.kind === 'run' ? maxJobInput : opts.maxToolchainBytes;
      if (length > limit) throw KILN_ERR_DIST_TOO_LARGE(use.type, limit);
      if (busy[use.kind] >= maxBusy[use.kind])
        throw KILN_ERR_DIST_UNAVAILABLE(`this worker is receiving ${busy[use.kind]} ${use.kind} requests`);
      const end = grants.begin(grant, use.kind);
      if (end === 'ran') throw KILN_ERR_AUTH_FORBIDDEN(USED);
      if (end === 'busy') throw KILN_ERR_AUTH_FORBIDDEN(`a ${use.kind} with this job token is in flight`);
      busy[use.kind]++;
      // The response's close comes however the request ends: answered, failed or cut.
      reply.raw.once('close', () => {
        busy[use.kind]--;
        end();
      });
    };

  /** Counts the job as held by this worker (reported in heartbeats) while the request runs. */
  const hold = (jobId: string) => {
    inFlight.set(jobId, (inFlight.get(jobId) ?? 0) + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const n = (inFlight.get(jobId) ?? 1) - 1;
      if (n > 0) inFlight.set(jobId, n);
      else inFlight.delete(jobId);
    };
  };

  app.get(`${API}/health`, async () => ({ id: opts.id, hostTriple: opts.hostTriple, version: opts.version }));
  // For load balancers and service managers: no credentials, and nothing in it is secret.
  app.get('/healthz', async () => ({ status: 'ok', id: opts.id, version: opts.version }));
  app.get('/metrics', async (request, reply) => {
    if (!opts.metricsToken)
      throw KILN_ERR_DIST_NOT_FOUND('/metrics (set metrics_token_file in worker.toml to turn it on)');
    if (!sameToken(bearerOf(request.headers.authorization), opts.metricsToken()))
      throw KILN_ERR_AUTH_REQUIRED('metrics token');
    return reply.type(METRICS_CONTENT_TYPE).send(metrics.registry.render());
  });

  app.post<{ Params: { jobId: string } }>(
    `${API}/jobs/:jobId/ping`,
    { schema: { params: jobIdParams }, onRequest: requireToken('probe') },
    async () => ({ ok: true, workerId: opts.id }),
  );

  app.head<{ Params: { digest: string } }>(
    `${API}/toolchains/:digest`,
    { schema: { params: digestParams }, onRequest: requireToken('job') },
    async (request, reply) => reply.code(opts.store.has(request.params.digest) ? 200 : 404).send(),
  );

  app.put<{ Params: { digest: string }; Querystring: { kind?: string } }>(
    `${API}/toolchains/:digest`,
    {
      schema: { params: digestParams, querystring: toolchainQuery },
      onRequest: requireToken('job', { kind: 'upload', type: 'application/octet-stream' }),
    },
    async (request, reply) => {
      const grant = grantOf.get(request)!;
      const release = hold(grant.jobId);
      try {
        uploads++;
        await opts.store.put(
          request.params.digest,
          request.query.kind ?? 'archive',
          request.body as Readable,
        );
        metrics.uploads.inc();
        metrics.uploadBytes.inc({}, Number(request.headers['content-length'] ?? 0) || 0);
      } finally {
        release();
      }
      opts.onToolchainStored?.(request.params.digest);
      return reply.code(201).send({ digest: request.params.digest });
    },
  );

  app.post<{ Params: { jobId: string }; Body: Buffer }>(
    `${API}/jobs/:jobId/run`,
    {
      schema: { params: jobIdParams },
      onRequest: requireToken('job', { kind: 'run', type: JOB_CONTENT_TYPE }),
      bodyLimit: maxJobInput,
    },
    async (request, reply) => {
      const grant = grantOf.get(request)!;
      metrics.inputBytes.inc({}, request.body.length);
      const { header, blobs } = decodeFrame<JobRequestHeader>(request.body);
      if (!validateJob(header)) {
        throw KILN_ERR_DIST_BAD_REQUEST(
          `job header: ${validateJob.errors?.[0]?.instancePath} ${validateJob.errors?.[0]?.message}`,
        );
      }
      if (header.inputs.length !== blobs.length)
        throw KILN_ERR_DIST_BAD_REQUEST('one blob per input is required');
      if (header.toolchain.digest !== grant.toolchain)
        throw KILN_ERR_AUTH_FORBIDDEN('the job token is for another toolchain');
      // A toolchain named by version is found (or installed) here, on its first job.
      const { version, targetTriple } = header.toolchain;
      if (version && !opts.store.has(header.toolchain.digest)) {
        try {
          await opts.store.resolveVersion({
            ...header.toolchain,
            hostTriples: [opts.hostTriple],
            targetTriple,
          });
        } catch (err) {
          // The job ends here (no upload can help): its token is spent and the scheduler frees its slot.
          if (grants.spend(grant.jobId)) opts.onJobDone?.(grant.jobId, true);
          throw err;
        }
      }
      // A job the worker lacks the toolchain for does not spend the token: the client uploads, then runs.
      const toolchain = opts.store.acquire(header.toolchain.digest);
      if (!grants.spend(grant.jobId)) {
        toolchain.release();
        throw KILN_ERR_AUTH_FORBIDDEN(USED);
      }
      const jobId = grant.jobId;
      // Everything the job holds (its slot, its toolchain, its outputs) is held until its answer
      // is sent or cut, and not before the sandbox is done with it.
      const releaseHold = hold(jobId);
      let slot: (() => void) | undefined;
      let result: SandboxResult | undefined;
      let running = true;
      let closed = false;
      let finished = false;
      let watchdog: NodeJS.Timeout | undefined;
      const finish = () => {
        if (running || !closed || finished) return;
        finished = true;
        clearInterval(watchdog);
        slot?.();
        toolchain.release();
        releaseHold();
        void result?.release();
        opts.onJobDone?.(jobId, result === undefined);
      };
      reply.raw.once('close', () => {
        closed = true;
        finish();
      });
      try {
        slot = await slots.acquire();
        const abs = (p: string) => path.posix.resolve(header.cwd, p);
        const started = performance.now();
        result = await metrics.timed(() =>
          opts.sandbox.run({
            id: jobId.replace(/[^A-Za-z0-9_-]/g, '_'),
            toolchainRoot: toolchain.root,
            cwd: header.cwd,
            argv: header.argv,
            env: header.env,
            inputs: header.inputs.map((p, i) => ({ path: abs(p), data: blobs[i]! })),
            outputs: header.outputs.map(abs),
            timeoutMs: Math.min(header.timeoutMs, opts.jobTimeoutMs),
            limits: opts.limits ?? DEFAULT_JOB_LIMITS,
          }),
        );
        const present = header.outputs.filter((p) => result!.outputs.has(abs(p)));
        const resultHeader: JobResultHeader = {
          exitCode: result.exitCode,
          signal: result.signal,
          timedOut: result.timedOut,
          outputs: present,
          elapsedMs: Math.round(performance.now() - started),
          ...(result.limitExceeded ? { limitExceeded: result.limitExceeded } : {}),
        };
        // Outputs stream from the sandbox's files: a big object never sits in the worker's memory.
        // A client that stops reading, or takes too long, is cut, which releases them.
        const sendStarted = Date.now();
        let lastProgress = sendStarted;
        watchdog = setInterval(() => {
          const now = Date.now();
          if (now - lastProgress > RESPONSE_IDLE_MS || now - sendStarted > answerDeadlineMs)
            request.raw.socket?.destroy();
        }, WATCHDOG_MS);
        watchdog.unref();
        reply.header('content-type', JOB_CONTENT_TYPE);
        const parts = [result.stdout, result.stderr, ...present.map((p) => result!.outputs.get(abs(p))!)];
        return reply.send(
          frameStream(resultHeader, parts, () => {
            lastProgress = Date.now();
          }),
        );
      } finally {
        running = false;
        // The client may have gone while the job ran.
        if (request.raw.socket?.destroyed) closed = true;
        finish();
      }
    },
  );

  return {
    app,
    jobKey,
    heldJobs: () => [...inFlight.keys()],
    toolchainUploads: () => uploads,
  };
}
