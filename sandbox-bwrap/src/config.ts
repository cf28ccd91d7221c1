import type { ObjectSchema } from '@kiln/plugins';

/** The `[sandbox_config]` table of worker.toml when `sandbox = "bwrap"`. */
export interface BwrapConfig {
  readonly bwrap_path: string;
  /** Absent: the worker's plugin work dir, else `<tmpdir>/kiln-bwrap`. */
  readonly work_dir?: string;
  readonly max_output_bytes: number;
  readonly max_log_bytes: number;
  readonly job_uid: number;
  readonly job_gid: number;
  readonly slot_uid_base: number;
  readonly extra_args: readonly string[];
}

const MiB = 1024 * 1024;

export const configSchema: ObjectSchema = {
  type: 'object',
  properties: {
    bwrap_path: {
      type: 'string',
      default: 'bwrap',
      description: 'The bubblewrap executable: a name looked up in PATH, or an absolute path.',
    },
    work_dir: {
      type: 'string',
      pattern: '^/',
      format: 'an absolute path',
      description: 'Absolute directory for per-job directories (default: <tmpdir>/kiln-bwrap).',
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
    job_uid: {
      type: 'integer',
      minimum: 0,
      maximum: 4294967294,
      default: 65534,
      description: 'The uid jobs run as inside their sandbox.',
    },
    job_gid: {
      type: 'integer',
      minimum: 0,
      maximum: 4294967294,
      default: 65534,
      description: 'The gid jobs run as, inside the sandbox and, for a root worker, on the host.',
    },
    slot_uid_base: {
      type: 'integer',
      minimum: 1,
      maximum: 4294901759,
      default: 2_000_000_000,
      description:
        'A root worker starts each running job as host uid slot_uid_base + its slot (0, 1, …), a uid no other process has, so that its process limit is its own.',
    },
    extra_args: {
      type: 'array',
      items: { type: 'string' },
      default: [],
      description:
        'More bwrap options, placed before the command (e.g. ["--ro-bind", "/etc/ssl", "/etc/ssl"]).',
    },
  },
};
