/**
 * The scheduler's HTTP server. `createScheduler` builds it; `kiln-dist scheduler` only listens and
 * shuts down. Workers heartbeat in, clients ask for a worker per job and get a job token for it.
 */

import { createSecretKey, type KeyObject, randomBytes } from 'node:crypto';
import { hostTriple } from '@kiln/plugins';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import {
  KILN_ERR_AUTH_FORBIDDEN,
  KILN_ERR_AUTH_REQUIRED,
  KILN_ERR_DIST_NOT_FOUND,
  KILN_ERR_DIST_RATE_LIMITED,
} from '../../errors.js';
import {
  type AllocateRequest,
  type AllocateResponse,
  API,
  allocateSchema,
  finishedSchema,
  heartbeatSchema,
  jobIdParams,
  leaveSchema,
  type WorkerHeartbeat,
  workerIdParams,
} from '../api.js';
import {
  bearerOf,
  browserCredentialOf,
  clientVerifier,
  jobToken,
  secretKeyFrom,
  verifyWorkerToken,
} from '../auth.js';
import { errorReplies } from '../http-errors.js';
import { serverOptions } from '../http-server.js';
import { METRICS_CONTENT_TYPE } from '../metrics.js';
import type { LogStream } from '../server-log.js';
import { ArchPoolScheduler } from './arch-pools.js';
import type { SchedulerConfig } from './scheduler-config.js';
import { schedulerMetrics } from './scheduler-metrics.js';
import { renderStatusPage, STATUS_PAGE_HEADERS } from './status-page.js';

/** Every request the scheduler takes is small: 30 s to send one is plenty. */
const REQUEST_TIMEOUT_MS = 30_000;
/** Probe tokens the scheduler mints per minute, for all clients together. */
const PROBES_PER_MINUTE = 120;

/** At most `max` takes per rolling minute. */
class MinuteBudget {
  private readonly times: number[] = [];
  constructor(private readonly max: number) {}
  take(): boolean {
    const now = Date.now();
    while (this.times.length && now - this.times[0]! >= 60_000) this.times.shift();
    if (this.times.length >= this.max) return false;
    this.times.push(now);
    return true;
  }
}

export interface SchedulerOptions {
  readonly config: SchedulerConfig;
  readonly version: string;
  /** How often workers are told to heartbeat. */
  readonly heartbeatIntervalMs?: number;
  readonly logger?: boolean;
  /** Where log lines go (server-log.ts: log_file reopened on SIGHUP, or the journal); else config.log_file or stdout. */
  readonly logStream?: LogStream;
  /** Serve HTTPS with this certificate and key (PEM); plain HTTP without. */
  readonly tls?: { readonly cert: string; readonly key: string };
}

export interface SchedulerApp {
  readonly app: FastifyInstance;
  readonly pools: ArchPoolScheduler;
}

export function createScheduler(opts: SchedulerOptions): SchedulerApp {
  const { config } = opts;
  const workerTimeoutMs = config.worker_timeout * 1000;
  const heartbeatIntervalMs = opts.heartbeatIntervalMs ?? Math.max(250, Math.floor(workerTimeoutMs / 4));
  const metrics = schedulerMetrics();
  const pools = new ArchPoolScheduler({
    workerTimeoutMs,
    assignTimeoutMs: Math.max(60_000, workerTimeoutMs),
    version: opts.version,
    hostTriple: hostTriple(),
    onJobEnded: (pool, state, heldMs) => {
      metrics.ended.inc({ pool, state });
      metrics.duration.observe(heldMs / 1000, { pool });
    },
  });
  metrics.watch(pools, opts.version);
  const secret = secretKeyFrom(config.worker_auth.secret_key);
  const verifyClient = clientVerifier(config.client_auth);
  const jobKeys = new Map<string, { text: string; key: KeyObject }>();
  // One type for both: routes and hooks do not depend on the server underneath.
  const app = Fastify({
    // Unknown fields are an error, not silently dropped (fastify's default).
    ajv: { customOptions: { removeAdditional: false } },
    logger: opts.logger
      ? {
          level: config.log_level,
          ...(opts.logStream ? { stream: opts.logStream } : config.log_file ? { file: config.log_file } : {}),
        }
      : false,
    bodyLimit: 1024 * 1024,
    // Allocation is the hot path: keep-alive clients, no per-request trust of proxies.
    ...serverOptions(REQUEST_TIMEOUT_MS, opts.tls),
  }) as unknown as FastifyInstance;
  app.register(errorReplies);
  // Only JSON (and the binary types below) are accepted: anything else is a 415.
  app.removeContentTypeParser('text/plain');

  // Credentials are checked in onRequest hooks: before a byte of the body is read.
  const requireClient = async (request: FastifyRequest) => {
    if (!(await verifyClient(bearerOf(request.headers.authorization))))
      throw KILN_ERR_AUTH_REQUIRED('client');
  };
  const workerOf = new WeakMap<FastifyRequest, string>();
  const requireWorker = async (request: FastifyRequest) => {
    const token = bearerOf(request.headers.authorization);
    const workerId = token && (await verifyWorkerToken(secret, token));
    if (!workerId) throw KILN_ERR_AUTH_REQUIRED('worker');
    workerOf.set(request, workerId);
  };

  app.post<{ Body: WorkerHeartbeat }>(
    `${API}/workers/heartbeat`,
    { schema: { body: heartbeatSchema }, onRequest: requireWorker },
    async (request) => {
      const workerId = workerOf.get(request)!;
      const info = request.body;
      if (info.id !== workerId)
        throw KILN_ERR_AUTH_FORBIDDEN(`this token belongs to worker "${workerId}", not "${info.id}"`);
      if (!config.insecure && (!info.url.startsWith('https://') || !info.certSha256))
        throw KILN_ERR_AUTH_FORBIDDEN(
          `worker "${workerId}" serves plain http (${info.url}); this scheduler hands out only https workers unless insecure = true`,
        );
      if (config.worker_auth.check_worker_ip) {
        const host = new URL(info.url).hostname.replace(/^\[|\]$/g, '');
        if (host !== request.ip.replace(/^::ffff:/, ''))
          throw KILN_ERR_AUTH_FORBIDDEN(
            `worker "${workerId}" advertises ${host} but connects from ${request.ip}`,
          );
      }
      if (jobKeys.get(workerId)?.text !== info.jobKey) {
        jobKeys.set(workerId, {
          text: info.jobKey,
          key: createSecretKey(Buffer.from(info.jobKey, 'base64url')),
        });
      }
      pools.heartbeat(info);
      return { heartbeatIntervalMs, workerTimeoutMs };
    },
  );

  // A worker told to stop signs off: out of its pool now, not a worker_timeout later.
  app.post<{ Body: { id: string } }>(
    `${API}/workers/leave`,
    { schema: { body: leaveSchema }, onRequest: requireWorker },
    async (request, reply) => {
      const workerId = workerOf.get(request)!;
      if (request.body.id !== workerId)
        throw KILN_ERR_AUTH_FORBIDDEN(`this token belongs to worker "${workerId}", not "${request.body.id}"`);
      const running = pools.worker(workerId)?.jobs.size ?? 0;
      if (!pools.leave(workerId)) throw KILN_ERR_DIST_NOT_FOUND(`worker ${workerId}`);
      jobKeys.delete(workerId);
      app.log.info(
        `worker ${workerId} signed off; removed from its pool (${running} running jobs finish there)`,
      );
      return reply.code(204).send();
    },
  );

  app.post<{ Params: { jobId: string }; Body: { workerId: string; failed?: boolean } }>(
    `${API}/jobs/:jobId/finished`,
    { schema: { params: jobIdParams, body: finishedSchema }, onRequest: requireWorker },
    async (request, reply) => {
      const workerId = workerOf.get(request)!;
      if (request.body.workerId !== workerId)
        throw KILN_ERR_AUTH_FORBIDDEN('a worker can only finish its own jobs');
      if (!pools.finish(request.params.jobId, workerId, request.body.failed ?? false))
        throw KILN_ERR_DIST_NOT_FOUND(`job ${request.params.jobId}`);
      return reply.code(204).send();
    },
  );

  app.post<{ Body: AllocateRequest }>(
    `${API}/jobs`,
    { schema: { body: allocateSchema }, onRequest: requireClient },
    async (request) => {
      const result = pools.allocate(
        request.body.toolchain,
        request.body.exclude,
        request.body.client ?? request.ip,
      );
      if (result.ok) metrics.allocations.inc({ pool: result.worker.info.hostTriple });
      else
        metrics.noCapacity.inc({ pool: metrics.requested.of(request.body.toolchain.hostTriples[0] ?? '') });
      if (!result.ok)
        return {
          status: 'no_capacity',
          reason: result.reason,
          ...(result.noWorker ? { noWorker: true } : {}),
        } satisfies AllocateResponse;
      const { worker } = result;
      const key = jobKeys.get(worker.info.id)!.key;
      return {
        status: 'assigned',
        jobId: result.jobId,
        worker: {
          id: worker.info.id,
          url: worker.info.url,
          hostTriple: worker.info.hostTriple,
          ...(worker.info.certSha256 ? { certSha256: worker.info.certSha256 } : {}),
        },
        jobToken: await jobToken(
          key,
          worker.info.id,
          { jobId: result.jobId, scope: 'job', toolchain: request.body.toolchain.digest },
          config.job_token_lifetime,
        ),
        hasToolchain: result.hasToolchain,
      } satisfies AllocateResponse;
    },
  );

  app.get<{ Params: { jobId: string } }>(
    `${API}/jobs/:jobId`,
    { schema: { params: jobIdParams }, onRequest: requireClient },
    async (request) => {
      const job = pools.job(request.params.jobId);
      if (!job) throw KILN_ERR_DIST_NOT_FOUND(`job ${request.params.jobId}`);
      return job;
    },
  );

  app.get(`${API}/status`, { onRequest: requireClient }, async () => pools.status());

  // For load balancers and service managers: no credentials, and nothing in it is secret.
  app.get('/healthz', async () => ({
    status: 'ok',
    version: opts.version,
    workers: pools.status().totals.workers,
  }));

  // Counts only (no tokens, no URLs), but what runs where is the operator's business: the client token.
  app.get('/metrics', { onRequest: requireClient }, async (_request, reply) =>
    reply.type(METRICS_CONTENT_TYPE).send(metrics.registry.render()),
  );

  // The same for a browser, which is asked for the client token as the password of HTTP Basic auth.
  const statusPage = async (request: FastifyRequest, reply: FastifyReply) => {
    reply.headers(STATUS_PAGE_HEADERS);
    if (!(await verifyClient(browserCredentialOf(request.headers.authorization)))) {
      return reply
        .code(401)
        .header(
          'www-authenticate',
          'Basic realm="kiln scheduler: the client token is the password", charset="UTF-8"',
        )
        .type('text/plain; charset=utf-8')
        .send('kiln scheduler: the status page needs the client token (as the password, any user name)\n');
    }
    return reply.type('text/html; charset=utf-8').send(renderStatusPage(pools.status()));
  };
  app.get('/', statusPage);
  app.get('/status', statusPage);

  /**
   * A token for `kiln --dist-test-conn` to check it can reach and authenticate to a worker. It
   * only pings: it runs nothing, uploads nothing and holds no slot.
   */
  const probeBudget = new MinuteBudget(PROBES_PER_MINUTE);
  app.post<{ Params: { workerId: string } }>(
    `${API}/workers/:workerId/probe-token`,
    { schema: { params: workerIdParams }, onRequest: requireClient },
    async (request) => {
      const worker = pools.worker(request.params.workerId);
      const key = jobKeys.get(request.params.workerId)?.key;
      if (!worker || !key) throw KILN_ERR_DIST_NOT_FOUND(`worker ${request.params.workerId}`);
      if (!probeBudget.take()) throw KILN_ERR_DIST_RATE_LIMITED('probe tokens', PROBES_PER_MINUTE);
      const jobId = `probe-${randomBytes(9).toString('base64url')}`;
      return {
        jobId,
        url: worker.info.url,
        ...(worker.info.certSha256 ? { certSha256: worker.info.certSha256 } : {}),
        jobToken: await jobToken(key, worker.info.id, { jobId, scope: 'probe' }, 60),
      };
    },
  );

  const sweep = setInterval(
    () => {
      for (const id of pools.expire()) {
        jobKeys.delete(id);
        metrics.expired.inc();
        app.log.warn(`worker ${id} stopped heartbeating; removed from its pool`);
      }
    },
    Math.min(1000, workerTimeoutMs),
  );
  sweep.unref();
  app.addHook('onClose', async () => clearInterval(sweep));
  return { app, pools };
}
