import { spawn } from 'node:child_process';
import { captureOutput, signalName } from '@kiln/plugins';

export interface Execution {
  readonly exitCode: number | null;
  readonly signal: string | null;
  readonly timedOut: boolean;
  readonly stdout: Buffer;
  readonly stderr: Buffer;
}

export interface ExecuteOptions {
  readonly timeoutMs: number;
  readonly maxLogBytes: number;
  /** Host identity to start bwrap with (only when the worker runs as root). */
  readonly as?: { readonly uid: number; readonly gid: number };
}

/**
 * Runs bwrap in its own process group. On timeout the group gets SIGKILL; bwrap's --die-with-parent
 * and the end of its pid namespace take every process of the job with it. Rejects only when bwrap
 * could not be started at all.
 */
export function executeBwrap(file: string, args: readonly string[], o: ExecuteOptions): Promise<Execution> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
      // bwrap itself must not run with anything the client chose (LD_PRELOAD…): that goes in --setenv.
      env: {},
      cwd: '/',
      ...(o.as ? { uid: o.as.uid, gid: o.as.gid } : {}),
    });
    const stdout = captureOutput(child.stdout, o.maxLogBytes);
    const stderr = captureOutput(child.stderr, o.maxLogBytes);
    let timedOut = false;
    const killGroup = () => {
      try {
        if (child.pid) process.kill(-child.pid, 'SIGKILL');
      } catch {}
    };
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup();
    }, o.timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('exit', () => {
      // A stray holder of the pipes must not keep the job open once bwrap is gone.
      setTimeout(() => {
        child.stdout.destroy();
        child.stderr.destroy();
      }, 2000).unref();
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      let exitCode = code;
      let sig: string | null = signal;
      // bwrap reports a job killed by signal N as exit status 128+N, like a shell.
      if (code !== null && code > 128 && signalName(code - 128) !== undefined) {
        exitCode = null;
        sig = signalName(code - 128) ?? null;
      }
      resolve({ exitCode, signal: sig, timedOut, stdout: stdout(), stderr: stderr() });
    });
  });
}
