import { constants } from 'node:fs';
import fs, { type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import type { JobInput, SandboxOutput } from '@kiln/plugins';

/**
 * Makes sure `dir` is a real directory owned by this process and writable by no one else, so that
 * another local user cannot plant a symlink or swap job directories (it usually lives in /tmp).
 * Mode 0711: a job started as another uid must be able to reach its own directory inside.
 */
export async function ensureWorkDir(dir: string): Promise<void> {
  await fs.mkdir(dir, { recursive: true, mode: 0o711 });
  const st = await fs.lstat(dir);
  const me = process.getuid?.() ?? st.uid;
  if (!st.isDirectory()) throw new Error(`work_dir ${dir} is not a directory`);
  if (st.uid !== me)
    throw new Error(`work_dir ${dir} belongs to uid ${st.uid}, not to this worker (uid ${me})`);
  if (st.mode & 0o022)
    throw new Error(`work_dir ${dir} is writable by others (mode ${(st.mode & 0o777).toString(8)})`);
  if ((st.mode & 0o711) !== 0o711) await fs.chmod(dir, st.mode | 0o711);
}

/** Writes the inputs under `jobDir` (the job's cwd on the host) and hands everything to the job's uid. */
export async function writeInputs(
  jobDir: string,
  cwd: string,
  inputs: readonly JobInput[],
  owner: { uid: number; gid: number } | undefined,
): Promise<void> {
  const created: string[] = [jobDir];
  for (const input of inputs) {
    const rel = path.relative(cwd, input.path);
    const file = path.join(jobDir, rel);
    const parts = path.dirname(rel) === '.' ? [] : path.dirname(rel).split('/');
    let dir = jobDir;
    for (const part of parts) {
      dir = path.join(dir, part);
      if (
        await fs.mkdir(dir).then(
          () => true,
          (e: NodeJS.ErrnoException) => {
            if (e.code === 'EEXIST') return false;
            throw e;
          },
        )
      )
        created.push(dir);
    }
    // 'wx': never write through anything already there.
    await fs.writeFile(file, input.data, { flag: 'wx', mode: 0o600 });
    await fs.chmod(file, input.executable ? 0o755 : 0o644);
    created.push(file);
  }
  if (owner) for (const p of created) await fs.lchown(p, owner.uid, owner.gid);
}

export class OutputLimitError extends Error {}

/** Whether every directory between `jobDir` and `file` is a real directory (no symlink to follow). */
async function realDirsBetween(jobDir: string, file: string): Promise<boolean> {
  let dir = jobDir;
  for (const part of path.relative(jobDir, path.dirname(file)).split('/').filter(Boolean)) {
    dir = path.join(dir, part);
    const st = await fs.lstat(dir).catch(() => undefined);
    if (!st?.isDirectory()) return false;
  }
  return true;
}

/** An output file held open: it is streamed from this handle, whatever happens to its name. */
export interface HeldOutput extends SandboxOutput {
  close(): Promise<void>;
}

function held(fh: FileHandle, size: number): HeldOutput {
  return {
    size,
    // Exactly `size` bytes from the start (the job has ended: the file no longer changes).
    stream: () =>
      size === 0 ? Readable.from([]) : fh.createReadStream({ start: 0, end: size - 1, autoClose: false }),
    close: () => fh.close().catch(() => {}),
  };
}

/**
 * Opens the declared outputs the job left as regular files. Symlinks, FIFOs, devices and paths
 * through symlinked directories count as absent: the job directory is hostile once the job ran.
 * Rejects with OutputLimitError past `maxBytes` in total. Nothing is read: the caller streams the
 * outputs, then closes them.
 */
export async function collectOutputs(
  jobDir: string,
  cwd: string,
  outputs: readonly string[],
  maxBytes: number,
): Promise<Map<string, HeldOutput>> {
  const result = new Map<string, HeldOutput>();
  let total = 0;
  try {
    for (const out of new Set(outputs)) {
      const file = path.join(jobDir, path.relative(cwd, out));
      if (!(await realDirsBetween(jobDir, file))) continue;
      const st = await fs.lstat(file).catch(() => undefined);
      if (!st?.isFile()) continue;
      // O_NONBLOCK: a FIFO swapped in after the lstat must not hang the worker.
      const fh = await fs
        .open(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK)
        .catch(() => undefined);
      if (!fh) continue;
      const fst = await fh.stat().catch(() => undefined);
      if (!fst?.isFile()) {
        await fh.close();
        continue;
      }
      result.set(out, held(fh, fst.size));
      total += fst.size;
      if (total > maxBytes) throw new OutputLimitError(`outputs exceed max_output_bytes (${maxBytes})`);
    }
    return result;
  } catch (err) {
    await closeOutputs(result);
    throw err;
  }
}

export async function closeOutputs(outputs: ReadonlyMap<string, HeldOutput>): Promise<void> {
  for (const o of outputs.values()) await o.close();
}

/**
 * Removes a job directory whatever the job did to it. A job running as the worker's own uid may
 * have taken away permissions, so on failure every directory is made accessible again first.
 */
export async function removeJobDir(dir: string): Promise<void> {
  try {
    await fs.rm(dir, { recursive: true, force: true });
    return;
  } catch {}
  const reopen = async (d: string): Promise<void> => {
    await fs.chmod(d, 0o700).catch(() => {});
    const entries = await fs.readdir(d, { withFileTypes: true }).catch(() => []);
    for (const e of entries) if (e.isDirectory()) await reopen(path.join(d, e.name));
  };
  await reopen(dir);
  await fs.rm(dir, { recursive: true, force: true });
}
