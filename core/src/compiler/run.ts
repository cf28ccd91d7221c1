import { spawn } from 'node:child_process';

export interface RunResult {
  readonly exitCode: number;
  readonly stdout: Buffer;
  readonly stderr: Buffer;
  /** Set when the program could not be started or was killed by a signal. */
  readonly failure: string | undefined;
}

/** Runs a program to completion, capturing both streams. Never rejects. */
export function runCaptured(
  program: string,
  argv0: string,
  args: readonly string[],
  cwd: string,
  env: NodeJS.ProcessEnv,
): Promise<RunResult> {
  return new Promise((resolve) => {
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let child: ReturnType<typeof spawn>;
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
