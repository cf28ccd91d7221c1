export declare const quote: (s: string) => string;
export interface RootPlan {
    readonly toolchainRoot: string;
    /** An empty directory the root is built on (a mount point in the job's namespace only). */
    readonly newRoot: string;
    /** The job's writable directories on the host, bound at its cwd, /tmp and /dev/shm. */
    readonly cwdDir: string;
    readonly tmpDir: string;
    readonly shmDir: string;
    readonly cwd: string;
}
/**
 * The script, run as `sh -c SCRIPT kiln-setup COMMAND...`: it sets up the root, says "ready" on
 * fd 3, and runs COMMAND without fd 3 (sh stays the namespace's init, so that the job is an
 * ordinary process: pid 1 would ignore its own SIGABRT). Throws when the cwd cannot be made in it.
 */
export declare function setupScript(plan: RootPlan): Promise<string>;
