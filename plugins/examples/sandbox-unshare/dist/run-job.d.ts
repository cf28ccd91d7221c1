export interface Execution {
    readonly exitCode: number | null;
    readonly signal: string | null;
    readonly timedOut: boolean;
    readonly stdout: Buffer;
    readonly stderr: Buffer;
    /** Whether the setup script said "ready" before the job started. */
    readonly ready: boolean;
}
/**
 * Runs `file args` in its own process group with an empty environment and fd 3 as the setup's
 * "ready" pipe. On timeout the group gets SIGKILL, which takes the namespace's init (the setup
 * shell, a root process the job cannot move out of the group) and with it every job process.
 * Rejects only when the command could not be started.
 */
export declare function runJob(file: string, args: readonly string[], o: {
    timeoutMs: number;
    maxLogBytes: number;
}): Promise<Execution>;
