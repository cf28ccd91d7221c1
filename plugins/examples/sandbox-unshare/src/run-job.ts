import { spawn } from 'node:child_process';
import { captureOutput, signalName } from '@kiln/plugins';

export interface Execution {
  readonly exitCode: number | null;
  readonly signal: string | null;
  readonly timedOut: boolean;
  readonly stdout: Buffer;
  readonly stderr: Buffer;
  /** Whether the setup script said "ready" before the job started. */
  readonly ready: boolean;
}

/**
 * Runs `file args` in its own process group with an empty environment and fd 3 as the setup's
 * "ready" pipe. On timeout the group gets SIGKILL, which takes the namespace's init (the setup
 * shell, a root process the job cannot move out of the group) and with it every job process.
 * Rejects only when the command could not be started.
 */
export function runJob(
  file: string,
  args: readonly string[],
  o: { timeoutMs: number; maxLogBytes: number },
): Promise<Execution> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, {
      stdio: ['ignore', 'pipe', 'pipe', 'pipe'],
      detached: true,
      env: {},
      cwd: '/',
    });
    const stdout = captureOutput(child.stdout!, o.maxLogBytes);
    const stderr = captureOutput(child.stderr!, o.maxLogBytes);
    let ready = false;
    child.stdio[3]!.on('data', () => {
      ready = true;
    });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        if (child.pid) process.kill(-child.pid, 'SIGKILL');
      } catch {}
    }, o.timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('exit', () => {
      // A stray holder of the pipes must not keep the job open once it is gone.
      setTimeout(() => {
        for (const s of [child.stdout, child.stderr, child.stdio[3]]) s?.destroy();
      }, 2000).unref();
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      let exitCode = code;
      let sig: string | null = signal;
      // The setup shell reports a job killed by signal N as status 128+N.
      if (code !== null && code > 128 && signalName(code - 128) !== undefined) {
        exitCode = null;
        sig = signalName(code - 128) ?? null;
      }
      resolve({ exitCode, signal: sig, timedOut, stdout: stdout(), stderr: stderr(), ready });
    });
  });
}
