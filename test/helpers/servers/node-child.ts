/**
 * A test server run as a child process: started with its output watched for the line that says it
 * is ready, stopped with SIGTERM and, when it does not exit in time, SIGKILL.
 */
import { type ChildProcess, spawn } from 'node:child_process';

export interface ServerChild {
  readonly proc: ChildProcess;
  /** The ready line's match. */
  readonly ready: RegExpExecArray;
  output(): string;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once it exited. */
  stop(graceMs?: number): Promise<void>;
  /** SIGKILL at once: a server that dies mid-build. Resolves once it exited. */
  kill(): Promise<void>;
}

export function startChild(
  label: string,
  argv: readonly string[],
  ready: RegExp,
  opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<ServerChild> {
  const proc = spawn(process.execPath, argv, {
    cwd: opts.cwd,
    env: { ...process.env, ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const killAtExit = () => proc.kill('SIGKILL');
  process.once('exit', killAtExit);
  const exited = new Promise<void>((resolve) => {
    proc.once('exit', () => {
      process.removeListener('exit', killAtExit);
      resolve();
    });
  });
  const alive = () => proc.exitCode === null && proc.signalCode === null;
  let out = '';
  const stop = async (graceMs = 3000) => {
    if (!alive()) return;
    proc.kill('SIGTERM');
    const timer = setTimeout(() => proc.kill('SIGKILL'), graceMs);
    await exited;
    clearTimeout(timer);
  };
  const kill = async () => {
    if (alive()) proc.kill('SIGKILL');
    await exited;
  };
  return new Promise<ServerChild>((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`${label} did not start in time:\n${out}`));
    }, opts.timeoutMs ?? 30_000);
    const onData = (chunk: Buffer) => {
      out += chunk;
      const m = ready.exec(out);
      if (!m) return;
      clearTimeout(timer);
      proc.stdout!.removeListener('data', onData);
      proc.stderr!.removeListener('data', onData);
      // Keep draining, so a chatty server never blocks on a full pipe.
      proc.stdout!.on('data', (c: Buffer) => {
        out += c;
      });
      proc.stderr!.on('data', (c: Buffer) => {
        out += c;
      });
      resolve({ proc, ready: m, output: () => out, stop, kill });
    };
    proc.stdout!.on('data', onData);
    proc.stderr!.on('data', onData);
    proc.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${label} exited (${code ?? signal}) before it was ready:\n${out}`));
    });
  });
}
