import fs from 'node:fs/promises';
import path from 'node:path';
import type { SandboxJob } from '@kiln/plugins';
import { atLeast, type BwrapBinary } from './bwrap-binary.js';

/** Top-level names the sandbox provides itself, whatever the toolchain holds. */
const OWN_MOUNTS = new Set(['proc', 'dev', 'tmp']);

/** The toolchain root's top-level entries as mounts: directories and files read-only, symlinks re-created. */
export async function rootArgs(toolchainRoot: string): Promise<string[]> {
  const args: string[] = [];
  const entries = await fs.readdir(toolchainRoot, { withFileTypes: true });
  entries.sort((a, b) => (a.name < b.name ? -1 : 1));
  for (const e of entries) {
    if (OWN_MOUNTS.has(e.name)) continue;
    const src = path.join(toolchainRoot, e.name);
    const dest = `/${e.name}`;
    // Re-created rather than bound, so `lib -> usr/lib` resolves inside the sandbox, not on the host.
    if (e.isSymbolicLink()) args.push('--symlink', await fs.readlink(src), dest);
    else if (e.isDirectory() || e.isFile()) args.push('--ro-bind', src, dest);
  }
  return args;
}

export interface CommandOptions {
  readonly bwrap: BwrapBinary;
  readonly jobDir: string;
  readonly uid: number;
  readonly gid: number;
  readonly extraArgs: readonly string[];
  /** Host directories for /tmp and /dev/shm, on the job's own sized space; else fresh tmpfs mounts. */
  readonly tmpDirs?: { readonly tmp: string; readonly shm: string };
  /** Size of those fresh tmpfs mounts (bwrap 0.7+; older ones mount them unbounded). */
  readonly tmpBytes?: number;
}

/** bwrap's argument list for one job (without the bwrap executable itself). */
export async function bwrapArgs(job: SandboxJob, o: CommandOptions): Promise<string[]> {
  const { parts } = o.bwrap;
  const args = ['--unshare-all', '--unshare-user', '--uid', String(o.uid), '--gid', String(o.gid)];
  args.push('--die-with-parent', '--new-session', '--cap-drop', 'ALL');
  // Both appeared in later releases; on older ones bwrap's own environment is already empty.
  if (atLeast(parts, [0, 5, 0])) args.push('--clearenv');
  if (atLeast(parts, [0, 8, 0])) args.push('--disable-userns');
  args.push(...(await rootArgs(job.toolchainRoot)));
  // /dev itself is a writable tmpfs the size of half the RAM: read-only, with /dev/shm counted below.
  args.push('--proc', '/proc', '--dev', '/dev', '--remount-ro', '/dev');
  if (o.tmpDirs) args.push('--bind', o.tmpDirs.shm, '/dev/shm', '--bind', o.tmpDirs.tmp, '/tmp');
  else {
    const size = o.tmpBytes && atLeast(parts, [0, 7, 0]) ? ['--size', String(o.tmpBytes)] : [];
    args.push(...size, '--tmpfs', '/dev/shm', ...size, '--tmpfs', '/tmp');
  }
  // After /tmp, so a cwd under /tmp lands on the job's /tmp rather than under it.
  args.push('--bind', o.jobDir, job.cwd, '--chdir', job.cwd);
  for (const [k, v] of Object.entries(job.env)) args.push('--setenv', k, v);
  args.push(...o.extraArgs, '--', ...job.argv);
  return args;
}
