import { spawn } from 'node:child_process';
import { constants } from 'node:os';

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

/** Keeps the first `max` bytes of a stream and drains the rest, so a chatty job cannot fill memory. */
function capture(stream: NodeJS.ReadableStream, max: number): () => Buffer {
  const chunks: Buffer[] = [];
  let size = 0;
  stream.on('data', (chunk: Buffer) => {
    if (size >= max) return;
    const part = chunk.subarray(0, max - size);
    chunks.push(part);
    size += part.length;
  });
  return () => Buffer.concat(chunks, size);
}

// First name wins: SIGABRT over its alias SIGIOT, as Node itself reports them.
const SIGNAL_NAMES = new Map<number, string>();
for (const [name, n] of Object.entries(constants.signals))
  if (!SIGNAL_NAMES.has(n)) SIGNAL_NAMES.set(n, name);

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
    const stdout = capture(child.stdout, o.maxLogBytes);
    const stderr = capture(child.stderr, o.maxLogBytes);
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
      if (code !== null && code > 128 && SIGNAL_NAMES.has(code - 128)) {
        exitCode = null;
        sig = SIGNAL_NAMES.get(code - 128) ?? null;
      }
      resolve({ exitCode, signal: sig, timedOut, stdout: stdout(), stderr: stderr() });
    });
  });
}
