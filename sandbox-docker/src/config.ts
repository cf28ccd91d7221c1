import type { ObjectSchema } from '@kiln/plugins';

/** The `[sandbox_config]` table of worker.toml when `sandbox = "docker"`. */
export interface DockerConfig {
  /** Absent: DOCKER_HOST (unix:// only), else /var/run/docker.sock. */
  readonly engine_socket?: string;
  /** An OCI runtime the engine knows (e.g. "runsc" for gVisor); absent: the engine's default. */
  readonly runtime?: string;
  /** Absent: the worker's plugin work dir, else `<tmpdir>/kiln-docker`. */
  readonly work_dir?: string;
  /** Absent: built from runner/kiln-runner.c with the host's `cc -static`. */
  readonly runner_path?: string;
  readonly image_cache_size: number;
  /** Absent: the worker's max_jobs. */
  readonly warm_containers?: number;
  readonly idle_timeout: number;
  /** Absent: the host's CPUs divided by max_jobs, at least 1. */
  readonly cpus?: number;
  readonly job_uid?: number;
  readonly job_gid?: number;
  readonly max_output_bytes: number;
  readonly max_log_bytes: number;
  readonly api_timeout: number;
}

const MiB = 1024 * 1024;

export const configSchema: ObjectSchema = {
  type: 'object',
  properties: {
    engine_socket: {
      type: 'string',
      pattern: '^(/|unix:///)',
      format: 'a local socket: an absolute path or unix:///path',
      description:
        'The engine API socket: /path or unix:///path (rootless Docker: $XDG_RUNTIME_DIR/docker.sock; Podman: /run/podman/podman.sock). Default: DOCKER_HOST, else /var/run/docker.sock.',
    },
    runtime: {
      type: 'string',
      pattern: '^[A-Za-z0-9_.-]+$',
      format: 'a name of letters, digits, and _ . -',
      description: 'OCI runtime for job containers, e.g. "runsc" (gVisor). Default: the engine\'s.',
    },
    work_dir: {
      type: 'string',
      pattern: '^/',
      format: 'an absolute path',
      description: "Absolute directory for the containers' job directories (default: <tmpdir>/kiln-docker).",
    },
    runner_path: {
      type: 'string',
      pattern: '^/',
      format: 'an absolute path',
      description:
        'A static kiln-runner executable (default: built from runner/kiln-runner.c with cc -static).',
    },
    image_cache_size: {
      type: 'integer',
      minimum: 0,
      default: 20 * 1024 * MiB,
      description:
        'Toolchain images this worker imported are removed least recently used first past this size.',
    },
    warm_containers: {
      type: 'integer',
      minimum: 0,
      description: 'Idle containers kept per toolchain and mount point (default: max_jobs).',
    },
    idle_timeout: {
      type: 'integer',
      minimum: 1,
      default: 600,
      description: 'Seconds an idle warm container is kept.',
    },
    cpus: {
      type: 'number',
      minimum: 0.01,
      description: 'CPUs one job may use (default: host CPUs / max_jobs, at least 1).',
    },
    job_uid: {
      type: 'integer',
      minimum: 1,
      maximum: 4294967294,
      description:
        "uid jobs run as (default: 65534 for a root worker; the worker's own uid otherwise; 0 inside a rootless engine, which is the worker's uid outside).",
    },
    job_gid: {
      type: 'integer',
      minimum: 1,
      maximum: 4294967294,
      description: 'gid jobs run as (see job_uid).',
    },
    max_output_bytes: {
      type: 'integer',
      minimum: 1,
      default: 1024 * MiB,
      description: 'Largest total size of the declared output files of one job.',
    },
    max_log_bytes: {
      type: 'integer',
      minimum: 1024,
      default: 16 * MiB,
      description: 'Largest stdout and stderr kept per job; the rest is dropped.',
    },
    api_timeout: {
      type: 'integer',
      minimum: 1,
      default: 60,
      description: 'Seconds to wait for an engine API call (image imports get 10 minutes).',
    },
  },
};
