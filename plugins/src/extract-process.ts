/**
 * safeExtract in a short-lived child process. Unpacking a 45 MB gcc archive leaves a process about
 * 130 MB bigger (zlib and tar buffers that malloc keeps), and a worker pays for its size on every
 * fork, one per job: spawning bwrap took ~14 ms at 200 MB against ~5 ms at 90 MB. The child takes
 * that memory with it when it exits, and a crash in it fails one extraction, not the worker.
 */
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { KILN_ERR_TOOLCHAIN_EXTRACT, KilnError } from './errors.js';
import type { ExtractLimits } from './safe-extract.js';

// Tests that import the TypeScript sources run the built child (npm run build comes first).
const CHILD = fileURLToPath(new URL('./extract-child.js', import.meta.url)).replace(
  /\/src\/extract-child\.js$/,
  '/dist/extract-child.js',
);
const MAX_STDERR = 8 * 1024;

type Answer =
  | { readonly ok: true }
  | { readonly error: { readonly code?: string; readonly message: string; readonly statusCode?: number } };

/** Same contract as safeExtract: all or nothing, KILN_ERR_TOOLCHAIN_UNSAFE for an unsafe archive. */
export function safeExtractInChild(archive: string, dest: string, limits: ExtractLimits = {}): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = fork(CHILD, [], { stdio: ['ignore', 'ignore', 'pipe', 'ipc'], execArgv: [] });
    let stderr = '';
    child.stderr?.on('data', (chunk: Buffer) => {
      if (stderr.length < MAX_STDERR) stderr += chunk.toString('utf8');
    });
    let answer: Answer | undefined;
    child.on('message', (msg: Answer) => {
      answer ??= msg;
    });
    child.on('error', (err) => reject(KILN_ERR_TOOLCHAIN_EXTRACT(archive, err.message)));
    child.on('close', (code, signal) => {
      if (answer && 'ok' in answer) return resolve();
      if (answer) {
        const { code: errCode, message, statusCode } = answer.error;
        return reject(
          errCode
            ? new KilnError(errCode, message, statusCode)
            : KILN_ERR_TOOLCHAIN_EXTRACT(archive, message),
        );
      }
      const last = stderr.trim().split('\n').slice(-3).join(' / ');
      reject(
        KILN_ERR_TOOLCHAIN_EXTRACT(
          archive,
          `the extraction process ended with ${signal ?? `status ${code}`}${last ? `: ${last}` : ''}`,
        ),
      );
    });
    child.send({ archive, dest, limits });
  });
}
