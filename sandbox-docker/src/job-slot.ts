/**
 * A warm container's writable directories on the host, bind-mounted into it: `mnt` at the job's
 * mount point (the first part of its cwd the toolchain lacks), `tmp` at /tmp, `shm` at /dev/shm.
 * A root worker makes the slot a tmpfs of the job's disk limit, so the three share one budget and
 * never touch the worker's disk. Emptied and checked between jobs.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { mountJobTmpfs, removeJobDir, runTool, spaceFull, unmountJobTmpfs } from '@kiln/plugins';

export interface Slot {
  readonly base: string;
  readonly mnt: string;
  readonly tmp: string;
  readonly shm: string;
  /** Whether `base` is a tmpfs of its own. */
  readonly mounted: boolean;
}

const DIRS = [
  ['mnt', 0o755],
  ['tmp', 0o1777],
  ['shm', 0o1777],
] as const;

/** Creates a slot under `workDir`; with `sizeBytes` (root only) a tmpfs, else plain directories. */
export async function createSlot(
  workDir: string,
  name: string,
  sizeBytes: number | undefined,
): Promise<Slot> {
  const base = await fs.mkdtemp(path.join(workDir, `${name}-`));
  const slot: Slot = {
    base,
    mnt: path.join(base, 'mnt'),
    tmp: path.join(base, 'tmp'),
    shm: path.join(base, 'shm'),
    mounted: sizeBytes !== undefined,
  };
  try {
    if (sizeBytes !== undefined) {
      await mountJobTmpfs(base, sizeBytes, 'kiln-docker-job');
    }
    for (const [dir, mode] of DIRS) {
      await fs.mkdir(path.join(base, dir));
      await fs.chmod(path.join(base, dir), mode);
    }
  } catch (err) {
    await removeSlot(slot).catch(() => {});
    throw err;
  }
  return slot;
}

/** Empties a slot after a job; rejects when something could not be removed (the slot is then dropped). */
export async function clearSlot(slot: Slot): Promise<void> {
  for (const [dir, mode] of DIRS) {
    const d = path.join(slot.base, dir);
    for (const name of await fs.readdir(d)) await removeJobDir(path.join(d, name));
    const st = await fs.lstat(d);
    if (!st.isDirectory() || (st.mode & 0o7777) !== mode || (await fs.readdir(d)).length)
      throw new Error(`${d} is not clean after the job`);
  }
}

/** Whether a mounted slot is (nearly) full: the job ran out of room, not into a bug of its own. */
export async function slotExhausted(slot: Slot): Promise<boolean> {
  return slot.mounted && spaceFull(slot.base);
}

export async function removeSlot(slot: Slot): Promise<void> {
  if (slot.mounted) await unmountJobTmpfs(slot.base).catch(() => {});
  await removeJobDir(slot.base);
}

/** Removes the slots a previous run of this worker left (its containers are gone with them). */
export async function removeLeftoverSlots(workDir: string, prefix: string): Promise<number> {
  let n = 0;
  for (const name of await fs.readdir(workDir).catch(() => [] as string[])) {
    if (!name.startsWith(`${prefix}-`)) continue;
    const base = path.join(workDir, name);
    await runTool('umount', ['-l', base]).catch(() => {});
    await removeJobDir(base).catch(() => {});
    n++;
  }
  return n;
}

/**
 * Where the slot's `mnt` is mounted for a job in `cwd`: the shortest prefix of `cwd` the toolchain
 * root does not have, so the toolchain stays visible and one warm container serves every cwd
 * below it (/home/a/x and /home/b/y both mount at /home). `undefined`: cwd lies in /tmp.
 */
export async function mountPointFor(toolchainRoot: string, cwd: string): Promise<string | undefined> {
  const parts = cwd.split('/').filter(Boolean);
  if (parts[0] === 'tmp') return undefined;
  let prefix = '';
  for (const part of parts) {
    prefix += `/${part}`;
    const st = await fs.lstat(path.join(toolchainRoot, prefix)).catch(() => undefined);
    if (!st) return prefix;
  }
  return prefix;
}

/** The host directory that is `cwd` inside the container. */
export function hostCwd(slot: Slot, mountPoint: string | undefined, cwd: string): string {
  return mountPoint === undefined
    ? path.join(slot.tmp, path.relative('/tmp', cwd))
    : path.join(slot.mnt, path.relative(mountPoint, cwd));
}
