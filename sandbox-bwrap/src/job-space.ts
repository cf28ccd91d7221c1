import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { removeJobDir } from '@kiln/plugins';

/** A job's writable directories on the host: its cwd, and with a mounted space also /tmp and /dev/shm. */
export interface JobSpace {
  /** The job's own directory in work_dir; everything below is removed afterwards. */
  readonly base: string;
  /** Bound at the job's cwd. */
  readonly cwd: string;
  /** Set when `base` is a tmpfs of the job's own size: bound at /tmp and /dev/shm. */
  readonly mounted?: { readonly tmp: string; readonly shm: string };
}

// A tmpfs inode costs kernel memory its size limit does not count: bound the number of files too.
const MAX_INODES = 262_144;

function run(file: string, args: readonly string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { timeout: 10_000 }, (err, _out, stderr) => {
      if (err) reject(new Error(`${file} ${args.join(' ')}: ${(stderr || err.message).trim()}`));
      else resolve();
    });
  });
}

/**
 * Creates a job's directories under `workDir`. With `sizeBytes`, `base` becomes a tmpfs of that
 * size (root only), so the job's cwd, /tmp and /dev/shm share one budget and never touch the
 * worker's disk; rejects when it cannot be mounted. `owner` gets the writable directories.
 */
export async function createJobSpace(
  workDir: string,
  id: string,
  sizeBytes: number | undefined,
  owner: { uid: number; gid: number } | undefined,
): Promise<JobSpace> {
  const base = await fs.mkdtemp(path.join(workDir, `${id}-`));
  if (sizeBytes === undefined) return { base, cwd: base };
  try {
    const options = `size=${sizeBytes},nr_inodes=${MAX_INODES},mode=0711,nosuid,nodev`;
    await run('mount', ['-t', 'tmpfs', '-o', options, 'kiln-job', base]);
  } catch (err) {
    await fs.rmdir(base).catch(() => {});
    throw err;
  }
  const space = {
    base,
    cwd: path.join(base, 'cwd'),
    mounted: { tmp: path.join(base, 'tmp'), shm: path.join(base, 'shm') },
  };
  try {
    for (const dir of [space.cwd, space.mounted.tmp, space.mounted.shm]) {
      await fs.mkdir(dir, { mode: 0o700 });
      if (owner) await fs.chown(dir, owner.uid, owner.gid);
    }
  } catch (err) {
    await removeJobSpace(space).catch(() => {});
    throw err;
  }
  return space;
}

/** Whether a mounted space is (nearly) full: the job ran out of room, not into a bug of its own. */
export async function spaceExhausted(space: JobSpace): Promise<boolean> {
  if (!space.mounted) return false;
  const st = await fs.statfs(space.base).catch(() => undefined);
  if (!st) return false;
  const free = st.bavail * st.bsize;
  return st.ffree === 0 || free < Math.max(1024 * 1024, (st.blocks * st.bsize) / 100);
}

/** Unmounts (lazily if something still holds it) and removes a job's space. */
export async function removeJobSpace(space: JobSpace): Promise<void> {
  if (space.mounted) {
    await run('umount', [space.base]).catch(() => run('umount', ['-l', space.base]));
    await fs.rmdir(space.base);
    return;
  }
  await removeJobDir(space.base);
}
