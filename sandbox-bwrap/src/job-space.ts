import fs from 'node:fs/promises';
import path from 'node:path';
import { mountJobTmpfs, removeJobDir, runTool, spaceFull, unmountJobTmpfs } from '@kiln/plugins';

/** A job's writable directories on the host: its cwd, and with a mounted space also /tmp and /dev/shm. */
export interface JobSpace {
  /** The job's own directory in work_dir; everything below is removed afterwards. */
  readonly base: string;
  /** Bound at the job's cwd. */
  readonly cwd: string;
  /** Set when `base` is a tmpfs of the job's own size: bound at /tmp and /dev/shm. */
  readonly mounted?: { readonly tmp: string; readonly shm: string };
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
    await mountJobTmpfs(base, sizeBytes, 'kiln-job');
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
  return space.mounted !== undefined && spaceFull(space.base);
}

/** Unmounts (lazily if something still holds it) and removes a job's space. */
export async function removeJobSpace(space: JobSpace): Promise<void> {
  if (space.mounted) {
    await unmountJobTmpfs(space.base);
    await fs.rmdir(space.base);
    return;
  }
  await removeJobDir(space.base);
}

/** Mount points at or under `dir` (from /proc/self/mountinfo), deepest first. */
async function mountsUnder(dir: string): Promise<string[]> {
  const info = await fs.readFile('/proc/self/mountinfo', 'utf8').catch(() => '');
  const decode = (p: string) =>
    p.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8)));
  const found = info
    .split('\n')
    .map((line) => line.split(' ')[4])
    .filter((p): p is string => p !== undefined)
    .map(decode)
    .filter((p) => p === dir || p.startsWith(`${dir}/`));
  return found.sort((a, b) => b.length - a.length);
}

/** What createJobSpace and the probe name their directories: `<job id>-XXXXXX` (mkdtemp). */
const JOB_DIR_NAME = /^[A-Za-z0-9_-]{1,128}-[A-Za-z0-9]{6}$/;

/**
 * Removes what a killed worker left in its work dir: job spaces still mounted (a tmpfs holds RAM
 * until it is unmounted) and job directories. Only entries named like job directories are
 * touched. Called once, before the first job.
 */
export async function removeLeftovers(workDir: string): Promise<void> {
  const isJobDir = (p: string) => path.dirname(p) === workDir && JOB_DIR_NAME.test(path.basename(p));
  for (const mount of await mountsUnder(workDir)) {
    const top = path.join(workDir, path.relative(workDir, mount).split('/')[0] ?? '');
    if (isJobDir(top)) await runTool('umount', ['-l', mount]).catch(() => {});
  }
  for (const entry of await fs.readdir(workDir).catch(() => [])) {
    const p = path.join(workDir, entry);
    if (isJobDir(p)) await removeJobDir(p).catch(() => {});
  }
}
