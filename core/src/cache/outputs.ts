import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

/**
 * Writes a compiler output the way a compiler would leave it, but atomically: a temp file beside
 * the target, then a rename (`mode` before the umask: 0o777 for loadable libraries). Throws (EACCES, ENOENT…) when the target cannot be written.
 */
export function writeOutputFile(cwd: string, file: string, data: Buffer, mode = 0o666): void {
  const target = path.resolve(cwd, file);
  const tmp = path.join(
    path.dirname(target),
    `.${path.basename(target)}.kiln-${process.pid}-${randomBytes(3).toString('hex')}`,
  );
  try {
    fs.writeFileSync(tmp, data, { mode });
    fs.renameSync(tmp, target);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw err;
  }
}

export function readOutputFile(cwd: string, file: string): Buffer | undefined {
  try {
    return fs.readFileSync(path.resolve(cwd, file));
  } catch {
    return undefined;
  }
}
