/**
 * The worker's HTTP server. Clients come with a job token the scheduler minted for this worker:
 * they upload a toolchain once, then run jobs in the sandbox. Everything they send is hostile
 * until checked.
 */
import { createSecretKey, randomBytes } from 'node:crypto';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { KilnError, type Sandbox } from '@kiln/plugins';
import { Ajv } from 'ajv';
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify';
import { KILN_ERR_AUTH_FORBIDDEN, KILN_ERR_AUTH_REQUIRED, KILN_ERR_DIST_BAD_REQUEST } from '../../errors.js';
import { API, digestParams, jobIdParams } from '../api.js';
import { bearerOf, verifyJobToken } from '../auth.js';
import { errorReplies } from '../http-errors.js';
import {
  decodeFrame,
  encodeFrame,
  JOB_CONTENT_TYPE,
  type JobRequestHeader,
  type JobResultHeader,
  jobRequestSchema,
} from '../wire.js';
import { JobSlots } from './job-slots.js';
import type { ToolchainStore } from './toolchain-store.js';

export interface WorkerAppOptions {
  readonly id: string;
  readonly hostTriple: string;
  readonly version: string;
  readonly sandbox: Sandbox;
  readonly store: ToolchainStore;
  readonly maxJobs: number;
  readonly jobTimeoutMs: number;
  readonly maxToolchainBytes: number;
  /** Called when a job ends, to tell the scheduler its slot is free. */
  readonly onJobDone?: (jobId: string, failed: boolean) => void;
  /** Called when an uploaded toolchain is stored, to tell the scheduler this worker holds it. */
  readonly onToolchainStored?: (digest: string) => void;
  readonly logger?: boolean;
  readonly logLevel?: string;
  /** Serve HTTPS with this certificate and key (PEM); plain HTTP without. */
  readonly tls?: { readonly cert: string; readonly key: string };
}

export interface WorkerApp {
  readonly app: FastifyInstance;
  /** Base64url secret the scheduler signs this worker's job tokens with (sent in heartbeats). */
  readonly jobKey: string;
  /** Job ids this worker holds now (token seen, not finished). */
  heldJobs(): string[];
  /** Toolchain archives received since start, stored or not (a repeated upload counts again). */
  toolchainUploads(): number;
}

const MAX_JOB_BODY = 512 * 1024 * 1024;
/** A job whose token was used for an upload but that never ran stops counting after this long. */
const HOLD_MS = 10 * 60_000;

export function createWorkerApp(opts: WorkerAppOptions): WorkerApp {
  const jobKey = randomBytes(32).toString('base64url');
  const key = createSecretKey(Buffer.from(jobKey, 'base64url'));
  const slots = new JobSlots(opts.maxJobs, opts.maxJobs * 2);
  const held = new Map<string, number>();
  let uploads = 0;
  const validateJob = new Ajv({ allErrors: false }).compile<JobRequestHeader>(jobRequestSchema);
  const app = Fastify({
    ...(opts.tls ? { https: { cert: opts.tls.cert, key: opts.tls.key } } : {}),
    // Unknown fields are an error, not silently dropped (fastify's default).
    ajv: { customOptions: { removeAdditional: false } },
    logger: opts.logger ? { level: opts.logLevel ?? 'warn' } : false,
    bodyLimit: MAX_JOB_BODY,
  }) as unknown as FastifyInstance;
  app.register(errorReplies);
  // Only JSON (and the binary types below) are accepted: anything else is a 415.
  app.removeContentTypeParser('text/plain');
  app.addContentTypeParser(
    JOB_CONTENT_TYPE,
    { parseAs: 'buffer', bodyLimit: MAX_JOB_BODY },
    (_req, body, done) => done(null, body),
  );
  // Toolchains stream to disk while hashing; the store enforces the size limit.
  app.addContentTypeParser('application/octet-stream', (_req, payload, done) => done(null, payload));

  /** The job id a request's token is bound to; 401 without a valid one. */
  const requireJob = async (request: FastifyRequest): Promise<string> => {
    const token = bearerOf(request.headers.authorization);
    const jobId = token && (await verifyJobToken(key, opts.id, token));
    if (!jobId) throw KILN_ERR_AUTH_REQUIRED('job token');
    held.set(jobId, Date.now());
    return jobId;
  };

  app.get(`${API}/health`, async () => ({ id: opts.id, hostTriple: opts.hostTriple, version: opts.version }));

  app.post<{ Params: { jobId: string } }>(
    `${API}/jobs/:jobId/ping`,
    { schema: { params: jobIdParams } },
    async (request) => {
      const jobId = await requireJob(request);
      held.delete(jobId);
      if (jobId !== request.params.jobId) throw KILN_ERR_AUTH_FORBIDDEN('the job token is for another job');
      return { ok: true, workerId: opts.id };
    },
  );

  app.head<{ Params: { digest: string } }>(
    `${API}/toolchains/:digest`,
    { schema: { params: digestParams } },
    async (request, reply) => {
      await requireJob(request);
      return reply.code(opts.store.has(request.params.digest) ? 200 : 404).send();
    },
  );

  app.put<{ Params: { digest: string }; Querystring: { kind?: string } }>(
    `${API}/toolchains/:digest`,
    { schema: { params: digestParams } },
    async (request, reply) => {
      await requireJob(request);
      const length = Number(request.headers['content-length'] ?? 0);
      if (length > opts.maxToolchainBytes) {
        throw new KilnError(
          'KILN_ERR_DIST_TOOLCHAIN_TOO_BIG',
          `toolchain archive is over ${opts.maxToolchainBytes} bytes`,
          413,
        );
      }
      if (!request.body)
        throw KILN_ERR_DIST_BAD_REQUEST('a toolchain upload needs content-type application/octet-stream');
      uploads++;
      await opts.store.put(request.params.digest, request.query.kind ?? 'archive', request.body as Readable);
      opts.onToolchainStored?.(request.params.digest);
      return reply.code(201).send({ digest: request.params.digest });
    },
  );

  app.post<{ Params: { jobId: string }; Body: Buffer }>(
    `${API}/jobs/:jobId/run`,
    { schema: { params: jobIdParams } },
    async (request, reply) => {
      const jobId = await requireJob(request);
      let failed = true;
      try {
        if (jobId !== request.params.jobId) throw KILN_ERR_AUTH_FORBIDDEN('the job token is for another job');
        if (!Buffer.isBuffer(request.body))
          throw KILN_ERR_DIST_BAD_REQUEST(`a job needs content-type ${JOB_CONTENT_TYPE}`);
        const { header, blobs } = decodeFrame<JobRequestHeader>(request.body);
        if (!validateJob(header)) {
          throw KILN_ERR_DIST_BAD_REQUEST(
            `job header: ${validateJob.errors?.[0]?.instancePath} ${validateJob.errors?.[0]?.message}`,
          );
        }
        if (header.inputs.length !== blobs.length)
          throw KILN_ERR_DIST_BAD_REQUEST('one blob per input is required');
        const toolchain = opts.store.acquire(header.toolchain.digest);
        const release = await slots.acquire().catch((err) => {
          toolchain.release();
          throw err;
        });
        try {
          const abs = (p: string) => path.posix.resolve(header.cwd, p);
          const started = performance.now();
          const result = await opts.sandbox.run({
            id: jobId.replace(/[^A-Za-z0-9_-]/g, '_'),
            toolchainRoot: toolchain.root,
            cwd: header.cwd,
            argv: header.argv,
            env: header.env,
            inputs: header.inputs.map((p, i) => ({ path: abs(p), data: blobs[i]! })),
            outputs: header.outputs.map(abs),
            timeoutMs: Math.min(header.timeoutMs, opts.jobTimeoutMs),
          });
          const present = header.outputs.filter((p) => result.outputs.has(abs(p)));
          const resultHeader: JobResultHeader = {
            exitCode: result.exitCode,
            signal: result.signal,
            timedOut: result.timedOut,
            outputs: present,
            elapsedMs: Math.round(performance.now() - started),
          };
          failed = false;
          reply.header('content-type', JOB_CONTENT_TYPE);
          return encodeFrame(resultHeader, [
            result.stdout,
            result.stderr,
            ...present.map((p) => result.outputs.get(abs(p))!),
          ]);
        } finally {
          release();
          toolchain.release();
        }
      } finally {
        held.delete(jobId);
        opts.onJobDone?.(jobId, failed);
      }
    },
  );

  return {
    app,
    jobKey,
    heldJobs: () => {
      const now = Date.now();
      for (const [jobId, since] of held) if (now - since > HOLD_MS) held.delete(jobId);
      return [...held.keys()];
    },
    toolchainUploads: () => uploads,
  };
}
