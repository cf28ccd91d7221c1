/**
 * The HTTP API between client, scheduler and worker: body types and the JSON schemas fastify
 * validates them with (additionalProperties: false everywhere: unknown fields are a 400).
 */

export const API = '/api/v1';

const triple = { type: 'string', pattern: '^[a-z0-9_]+(-[a-z0-9_.]+){1,4}$', maxLength: 100 } as const;
const digest = { type: 'string', pattern: '^[0-9a-f]{64}$' } as const;
const id = { type: 'string', pattern: '^[A-Za-z0-9_.:-]{1,100}$' } as const;

export interface WorkerHeartbeat {
  readonly id: string;
  /** Where clients reach the worker, e.g. http://10.0.0.5:10601 */
  readonly url: string;
  readonly hostTriple: string;
  readonly os: string;
  readonly cpuModel: string;
  readonly cpus: number;
  readonly memoryBytes: number;
  readonly maxJobs: number;
  readonly sandbox: string;
  readonly resolvers: readonly string[];
  readonly toolchains: readonly string[];
  /**
   * Toolchain archives clients sent it since it started (each client should send one once).
   * Optional, so that a scheduler and workers one version apart still understand each other.
   */
  readonly toolchainUploads?: number;
  /** Jobs the worker holds now (uploading or running). */
  readonly runningJobs: readonly string[];
  /** The key (base64url) the scheduler signs this worker's job tokens with. */
  readonly jobKey: string;
  readonly version: string;
  /**
   * SHA-256 fingerprint of the certificate the worker serves HTTPS with; the scheduler hands it to
   * clients with each allocation and they pin it. Absent for a plain-http (insecure) worker.
   */
  readonly certSha256?: string;
}

const fingerprint = { type: 'string', pattern: '^([0-9A-F]{2}:){31}[0-9A-F]{2}$' } as const;

export const heartbeatSchema = {
  type: 'object',
  additionalProperties: false,
  required: [
    'id',
    'url',
    'hostTriple',
    'os',
    'cpuModel',
    'cpus',
    'memoryBytes',
    'maxJobs',
    'sandbox',
    'resolvers',
    'toolchains',
    'runningJobs',
    'jobKey',
    'version',
  ],
  properties: {
    id,
    url: { type: 'string', pattern: '^https?://', maxLength: 500 },
    hostTriple: triple,
    os: { type: 'string', maxLength: 100 },
    cpuModel: { type: 'string', maxLength: 200 },
    cpus: { type: 'integer', minimum: 1, maximum: 4096 },
    memoryBytes: { type: 'number', minimum: 0 },
    maxJobs: { type: 'integer', minimum: 1, maximum: 4096 },
    sandbox: { type: 'string', maxLength: 100 },
    resolvers: { type: 'array', maxItems: 32, items: { type: 'string', maxLength: 100 } },
    toolchains: { type: 'array', maxItems: 10_000, items: digest },
    toolchainUploads: { type: 'integer', minimum: 0 },
    runningJobs: { type: 'array', maxItems: 10_000, items: id },
    jobKey: { type: 'string', pattern: '^[A-Za-z0-9_-]{43,}$', maxLength: 200 },
    version: { type: 'string', maxLength: 50 },
    certSha256: fingerprint,
  },
} as const;

export interface ToolchainRef {
  readonly kind: string;
  readonly digest: string;
  readonly hostTriples: readonly string[];
}

export const toolchainRefSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['kind', 'digest', 'hostTriples'],
  properties: {
    kind: { type: 'string', maxLength: 100 },
    digest,
    hostTriples: { type: 'array', minItems: 1, maxItems: 16, items: triple },
  },
} as const;

export interface AllocateRequest {
  readonly toolchain: ToolchainRef;
  /** The client's name, for fair shares and the status (optional: older clients do not send it). */
  readonly client?: string;
  /**
   * Workers not to choose: the one a job just failed on, when the client tries another. Optional
   * (sent only on such a retry), so that a client and a scheduler one version apart still agree.
   */
  readonly exclude?: readonly string[];
}

export const allocateSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['toolchain'],
  properties: {
    toolchain: toolchainRefSchema,
    exclude: { type: 'array', maxItems: 16, items: id },
    client: { type: 'string', pattern: '^[A-Za-z0-9._@:/-]{1,100}$' },
  },
} as const;

export type AllocateResponse =
  | {
      readonly status: 'assigned';
      readonly jobId: string;
      readonly worker: {
        readonly id: string;
        readonly url: string;
        readonly hostTriple: string;
        /** The fingerprint to pin on connecting to `url` (https workers). */
        readonly certSha256?: string;
      };
      readonly jobToken: string;
      /** The scheduler's belief; the worker answers 409 if it is wrong. */
      readonly hasToolchain: boolean;
    }
  | {
      readonly status: 'no_capacity';
      readonly reason: string;
      /** True when no worker at all could run it (no pool for its host triples), not merely all busy. */
      readonly noWorker?: boolean;
    };

export const JobState = {
  ASSIGNED: 'assigned',
  FINISHED: 'finished',
  FAILED: 'failed',
} as const;
export type JobState = (typeof JobState)[keyof typeof JobState];

/** What the status shows of a worker: its heartbeat's facts, with jobs and toolchains counted. */
export interface WorkerStatus extends Omit<WorkerHeartbeat, 'runningJobs' | 'toolchains' | 'jobKey'> {
  readonly runningJobs: number;
  readonly toolchains: number;
  readonly lastHeartbeatMsAgo: number;
  /** Jobs that ended on this worker since it joined its pool, by how. */
  readonly finishedJobs: number;
  readonly failedJobs: number;
  /** The last job that failed here, if any. */
  readonly lastFailure?: { readonly jobId: string; readonly reason: string; readonly msAgo: number };
}

/** A job that ended, for the status page's "recent jobs". */
export interface RecentJob {
  readonly jobId: string;
  readonly workerId: string;
  /** Who asked for it: the client's name (`[dist] client_name`), else its address. */
  readonly client?: string;
  /** The pool it ran in. */
  readonly hostTriple?: string;
  readonly state: 'finished' | 'failed';
  readonly reason?: string;
  /** Time from assignment to its end. */
  readonly durationMs: number;
  readonly endedMsAgo: number;
}

export interface PoolStatus {
  readonly hostTriple: string;
  readonly workers: readonly WorkerStatus[];
  readonly cpus: number;
  readonly maxJobs: number;
  readonly runningJobs: number;
  /** Jobs assigned in this pool, and requests for it answered "no capacity", since the scheduler started. */
  readonly allocations: number;
  readonly noCapacity: number;
}

export interface ClusterStatus {
  readonly version: string;
  /** Where the scheduler itself runs (e.g. aarch64 on a Raspberry Pi). */
  readonly schedulerHostTriple: string;
  readonly uptimeS: number;
  readonly totals: {
    readonly workers: number;
    readonly pools: number;
    readonly cpus: number;
    readonly maxJobs: number;
    readonly runningJobs: number;
    readonly allocations: number;
    readonly noCapacity: number;
    readonly lostJobs: number;
  };
  readonly pools: readonly PoolStatus[];
  /** Host triples clients asked for that no pool serves now, with the requests answered "no capacity". */
  readonly unserved: readonly { readonly hostTriple: string; readonly noCapacity: number }[];
  /** The last jobs that ended, newest first (at most 20). */
  readonly recentJobs: readonly RecentJob[];
}

export const jobIdParams = {
  type: 'object',
  required: ['jobId'],
  properties: { jobId: id },
} as const;

export const workerIdParams = {
  type: 'object',
  required: ['workerId'],
  properties: { workerId: id },
} as const;

export const digestParams = {
  type: 'object',
  required: ['digest'],
  properties: { digest },
} as const;

export const finishedSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['workerId'],
  properties: { workerId: id, failed: { type: 'boolean' } },
} as const;

/** A worker signing off: its own id (the token must name it). */
export const leaveSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['id'],
  properties: { id },
} as const;

export const toolchainQuery = {
  type: 'object',
  additionalProperties: false,
  properties: { kind: { type: 'string', pattern: '^[a-z0-9_-]{1,100}$' } },
} as const;
