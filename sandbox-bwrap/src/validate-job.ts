import path from 'node:path';
import { KILN_ERR_SANDBOX_JOB_INVALID, type SandboxJob } from '@kiln/plugins';

const MAX_TIMEOUT_MS = 2 ** 31 - 1;
const LIMIT_KEYS = ['processes', 'memoryBytes', 'tmpDiskBytes', 'outputBytes'] as const;
const ID = /^[A-Za-z0-9_-]{1,128}$/;
/** Places bwrap mounts its own file systems on; a job directory there would hide or break them. */
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
