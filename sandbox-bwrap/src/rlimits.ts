import type { JobLimits } from '@kiln/plugins';

/**
 * `prlimit` options that put a job's limits on bwrap and so on every process of the job. Without
 * cgroups these are per process, except RLIMIT_NPROC, which counts the processes and threads of
 * the real uid: `nproc` only when the job holds a host uid of its own, plus bwrap's own two
 * processes (the one started and the sandbox's init).
 */
export function prlimitArgs(limits: JobLimits, nproc: boolean): string[] {
  const args = [`--as=${limits.memoryBytes}`, `--fsize=${limits.tmpDiskBytes}`, '--core=0'];
  if (nproc) args.unshift(`--nproc=${limits.processes + 2}`);
  return args;
}
