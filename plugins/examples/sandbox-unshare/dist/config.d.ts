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
export declare const configSchema: ObjectSchema;
