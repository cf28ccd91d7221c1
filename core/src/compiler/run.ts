import { spawn } from 'node:child_process';

export interface RunResult {
  readonly exitCode: number;
  readonly stdout: Buffer;
  readonly stderr: Buffer;
  /** Set when the program could not be started or was killed by a signal. */
  readonly failure: string | undefined;
}

/**
 * Runs a program to completion, capturing both streams. Never rejects. With `umask`, the child
 * starts with that umask (the caller's, so that the files a compiler creates get its modes).
 */
export function runCaptured(
  program: string,
  argv0: string,
  args: readonly string[],
  cwd: string,
  env: NodeJS.ProcessEnv,
  umask?: number,
): Promise<RunResult> {
  return new Promise((resolve) => {
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let child: ReturnType<typeof spawn>;
    // The child inherits the umask at fork, which spawn() does before it returns: set it just
    // around the call (the daemon writes its own files with explicit modes).
    const previous = umask === undefined ? undefined : process.umask(umask);
    try {
      child = spawn(program, args, { argv0, cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (e) {
      resolve({
        exitCode: 127,
        stdout: Buffer.alloc(0),
        stderr: Buffer.alloc(0),
        failure: (e as Error).message,
      });
      return;
    } finally {
      if (previous !== undefined) process.umask(previous);
    }
    child.stdout!.on('data', (c: Buffer) => out.push(c));
    child.stderr!.on('data', (c: Buffer) => err.push(c));
    child.on('error', (e) => {
      resolve({ exitCode: 127, stdout: Buffer.concat(out), stderr: Buffer.concat(err), failure: e.message });
    });
    child.on('close', (code, signal) => {
      resolve({
        exitCode: code ?? 128,
        stdout: Buffer.concat(out),
        stderr: Buffer.concat(err),
        failure: signal ? `killed by ${signal}` : undefined,
      });
    });
  });
}
