import { type Sandbox, type SandboxJob, type SandboxProbe, type SandboxResult } from '@kiln/plugins';
import type { UnshareConfig } from './config.js';
export interface UnshareSandboxOptions extends UnshareConfig {
    readonly work_dir: string;
}
/**
 * Runs each job in new mount, pid, network, IPC and UTS namespaces made by util-linux `unshare`,
 * chrooted into a root built from the toolchain, as a host uid of its own without capabilities,
 * under `prlimit` limits. Needs a root worker: it mounts a tmpfs per job and switches uids.
 */
export declare class UnshareSandbox implements Sandbox {
    #private;
    private readonly options;
    readonly name = "unshare";
    constructor(options: UnshareSandboxOptions);
    probe(): Promise<SandboxProbe>;
    run(job: SandboxJob): Promise<SandboxResult>;
}
