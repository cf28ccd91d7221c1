/**
 * What every sandbox does on the host side of a job, whatever isolates it: refuse a malformed job,
 * write its inputs into a private directory, and hand back the declared outputs it left there as
 * open files, streamed from those handles (a job directory is hostile once the job ran).
 */
import { constants } from 'node:fs';
import fs, { type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { KILN_ERR_SANDBOX_JOB_INVALID } from './errors.js';
import type { JobInput, SandboxJob, SandboxOutput } from './sandbox.js';

const MAX_TIMEOUT_MS = 2 ** 31 - 1;
const LIMIT_KEYS = ['processes', 'memoryBytes', 'tmpDiskBytes', 'outputBytes'] as const;
const ID = /^[A-Za-z0-9_-]{1,128}$/;
/** Places a sandbox mounts its own file systems on (proc, devices); a job directory there would hide or break them. */
const RESERVED = ['/proc', '/dev'];

function isUnder(child: string, parent: string): boolean {
  return child.startsWith(parent === '/' ? '/' : `${parent}/`) && child !== parent;
}

/** An absolute path written the one canonical way: no `.`, `..`, `//` or trailing slash. */
function checkAbsolute(what: string, p: unknown): string {
  if (typeof p !== 'string' || p.includes('\0')) throw KILN_ERR_SANDBOX_JOB_INVALID(`${what} is not a path`);
  if (!path.isAbsolute(p)) throw KILN_ERR_SANDBOX_JOB_INVALID(`${what} "${p}" is not absolute`);
  if (p.split('/').some((seg) => seg === '..' || seg === '.'))
    throw KILN_ERR_SANDBOX_JOB_INVALID(`${what} "${p}" contains "." or ".."`);
  if (path.posix.normalize(p) !== p || (p.length > 1 && p.endsWith('/')))
    throw KILN_ERR_SANDBOX_JOB_INVALID(`${what} "${p}" is not in normal form`);
  return p;
}

function checkUnderCwd(what: string, p: unknown, cwd: string): string {
  checkAbsolute(what, p);
  if (!isUnder(p as string, cwd))
    throw KILN_ERR_SANDBOX_JOB_INVALID(`${what} "${String(p)}" is not under the job's cwd ${cwd}`);
  return p as string;
}

function checkString(what: string, s: unknown): void {
  if (typeof s !== 'string' || s.includes('\0'))
    throw KILN_ERR_SANDBOX_JOB_INVALID(`${what} is not a string`);
}

/**
 * Refuses a job a hostile or buggy client could use to write or read outside its own directory.
 * Throws KILN_ERR_SANDBOX_JOB_INVALID naming the first problem.
 */
export function validateJob(job: SandboxJob): void {
  if (typeof job.id !== 'string' || !ID.test(job.id))
    throw KILN_ERR_SANDBOX_JOB_INVALID(`job id "${String(job.id)}" must match ${ID.source}`);
  checkAbsolute('toolchainRoot', job.toolchainRoot);
  const cwd = checkAbsolute('cwd', job.cwd);
  if (cwd === '/') throw KILN_ERR_SANDBOX_JOB_INVALID('cwd must not be /');
  for (const r of RESERVED) {
    if (cwd === r || isUnder(cwd, r)) throw KILN_ERR_SANDBOX_JOB_INVALID(`cwd ${cwd} is inside ${r}`);
  }
  if (!Array.isArray(job.argv) || job.argv.length === 0) throw KILN_ERR_SANDBOX_JOB_INVALID('argv is empty');
  checkAbsolute('argv[0]', job.argv[0]);
  for (const [i, a] of job.argv.entries()) checkString(`argv[${i}]`, a);
  if (typeof job.env !== 'object' || job.env === null)
    throw KILN_ERR_SANDBOX_JOB_INVALID('env is not a table');
  for (const [k, v] of Object.entries(job.env)) {
    if (!k || k.includes('=') || k.includes('\0'))
      throw KILN_ERR_SANDBOX_JOB_INVALID(`environment name "${k}" is invalid`);
    checkString(`environment variable ${k}`, v);
  }
  if (!Array.isArray(job.inputs) || !Array.isArray(job.outputs))
    throw KILN_ERR_SANDBOX_JOB_INVALID('inputs and outputs must be arrays');
  const seen = new Set<string>();
  for (const input of job.inputs) {
    const p = checkUnderCwd('input', input.path, cwd);
    if (seen.has(p)) throw KILN_ERR_SANDBOX_JOB_INVALID(`input "${p}" is listed twice`);
    seen.add(p);
    if (!(input.data instanceof Uint8Array)) throw KILN_ERR_SANDBOX_JOB_INVALID(`input "${p}" has no data`);
  }
  for (const input of job.inputs) {
    // A file that is also another input's directory cannot be written.
    for (let dir = path.dirname(input.path); dir !== cwd; dir = path.dirname(dir)) {
      if (seen.has(dir)) throw KILN_ERR_SANDBOX_JOB_INVALID(`input "${dir}" is also a directory`);
    }
  }
  for (const out of job.outputs) checkUnderCwd('output', out, cwd);
  if (typeof job.limits !== 'object' || job.limits === null)
    throw KILN_ERR_SANDBOX_JOB_INVALID('limits is not a table');
  for (const key of LIMIT_KEYS) {
    const n = job.limits[key];
    if (!Number.isSafeInteger(n) || n < 1)
      throw KILN_ERR_SANDBOX_JOB_INVALID(`limits.${key} ${String(n)} is not a positive integer`);
  }
  // setTimeout fires at once beyond 2^31-1 ms.
  if (typeof job.timeoutMs !== 'number' || !(job.timeoutMs > 0) || job.timeoutMs > MAX_TIMEOUT_MS)
    throw KILN_ERR_SANDBOX_JOB_INVALID(
      `timeoutMs ${String(job.timeoutMs)} is not between 1 and ${MAX_TIMEOUT_MS}`,
    );
}

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

/** The declared outputs together exceed the byte limit given to `collectOutputs`. */
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

/** Closes every held output; never rejects. */
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

/**
 * Whether the file system holding `dir` (a job's own tmpfs) is full or nearly: a job that failed
 * then ran out of room, not into a bug of its own.
 */
export async function spaceFull(dir: string): Promise<boolean> {
  const st = await fs.statfs(dir).catch(() => undefined);
  if (!st) return false;
  const free = st.bavail * st.bsize;
  return st.ffree === 0 || free < Math.max(1024 * 1024, (st.blocks * st.bsize) / 100);
}
