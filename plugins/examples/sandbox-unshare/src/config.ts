import type { ObjectSchema } from '@kiln/plugins';

/** The `[sandbox_config]` table of worker.toml for this plugin. */
export interface UnshareConfig {
  /** Absent: the worker's plugin work dir, else `<tmpdir>/kiln-unshare`. */
  readonly work_dir?: string;
  readonly max_output_bytes: number;
  readonly max_log_bytes: number;
  readonly slot_uid_base: number;
  readonly job_gid: number;
}

const MiB = 1024 * 1024;

export const configSchema: ObjectSchema = {
  type: 'object',
  properties: {
    work_dir: {
      type: 'string',
      pattern: '^/',
      format: 'an absolute path',
      description: "Absolute directory for the jobs' tmpfs mounts (default: <plugin work dir>/kiln-unshare).",
    },
    max_output_bytes: {
      type: 'integer',
      minimum: 1,
      default: 1024 * MiB,
      description: "Largest total size of a job's declared outputs (the job's own limit applies too).",
    },
    max_log_bytes: {
      type: 'integer',
      minimum: 1024,
      default: 16 * MiB,
      description: 'Largest stdout and stderr kept per job; the rest is dropped.',
    },
    slot_uid_base: {
      type: 'integer',
      minimum: 1,
      maximum: 4294901759,
      default: 2_300_000_000,
      description:
        'Each running job gets host uid slot_uid_base + its slot, so its process limit is its own.',
    },
    job_gid: {
      type: 'integer',
      minimum: 1,
      maximum: 4294967294,
      default: 65534,
      description: 'The host gid jobs run as.',
    },
  },
};
