import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const RUNNER_SOURCE = fileURLToPath(new URL('../runner/kiln-runner.c', import.meta.url));

/**
 * kiln-runner for this host, built once with the host's `cc -static` into `dir` (named by the
 * source's digest, so an upgrade rebuilds it). Rejects saying what to install when it cannot.
 */
export async function buildRunner(dir: string): Promise<string> {
  const source = await fs.readFile(RUNNER_SOURCE);
  const digest = createHash('sha256').update(source).update(process.arch).digest('hex').slice(0, 16);
  const exe = path.join(dir, `kiln-runner-${digest}`);
  if (
    await fs.stat(exe).then(
      (s) => s.isFile(),
      () => false,
    )
  )
    return exe;
  const tmp = `${exe}.${process.pid}.tmp`;
  await new Promise<void>((resolve, reject) => {
    execFile('cc', ['-static', '-O2', '-o', tmp, RUNNER_SOURCE], { timeout: 120_000 }, (err, _o, stderr) => {
      if (err)
        reject(
          new Error(
            `cannot build kiln-runner (the program warm containers run) with "cc -static": ${(stderr || err.message).trim()}; install a C compiler and static libc (apt install gcc libc6-dev) or set [sandbox_config] runner_path to a static kiln-runner built from ${RUNNER_SOURCE}`,
          ),
        );
      else resolve();
    });
  });
  await fs.chmod(tmp, 0o755);
  await fs.rename(tmp, exe);
  return exe;
}
