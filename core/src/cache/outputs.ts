import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

/**
 * How the compiler itself writes a file, which decides what happens to a symlink or an existing
 * file there: `replace` puts a new file in its place (a symlink there is replaced, not followed);
 * `in-place` opens it for writing like fopen "w": through a symlink, keeping an existing file's
 * inode and mode.
 */
export type WriteStyle = 'replace' | 'in-place';

export interface WriteOptions {
  /** Permission bits before the umask: 0o777 for loadable libraries. */
  readonly mode?: number;
  /** The caller's umask; the daemon's own when the client did not send one. */
  readonly umask?: number;
  readonly style?: WriteStyle;
}

/**
 * Writes a compiler output the way the compiler would leave it. `replace` is atomic (a temp file
 * beside the target, then a rename). Throws (EACCES, ENOENT…) when the target cannot be written.
 */
export function writeOutputFile(cwd: string, file: string, data: Buffer, opts: WriteOptions = {}): void {
  const target = path.resolve(cwd, file);
  const mode = (opts.mode ?? 0o666) & ~(opts.umask ?? currentUmask());
  if (opts.style === 'in-place') {
    const existed = fs.existsSync(target);
    const fd = fs.openSync(target, 'w', mode);
    try {
      if (!existed) fs.fchmodSync(fd, mode);
      fs.writeSync(fd, data);
    } finally {
      fs.closeSync(fd);
    }
    return;
  }
  const tmp = path.join(
    path.dirname(target),
    `.${path.basename(target)}.kiln-${process.pid}-${randomBytes(3).toString('hex')}`,
  );
  try {
    fs.writeFileSync(tmp, data, { mode });
    fs.chmodSync(tmp, mode);
    fs.renameSync(tmp, target);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw err;
  }
}

function currentUmask(): number {
  // process.umask() without an argument is deprecated but is the only read; it does not change it.
  return process.umask();
}

export function readOutputFile(cwd: string, file: string): Buffer | undefined {
  try {
    return fs.readFileSync(path.resolve(cwd, file));
  } catch {
    return undefined;
  }
}
