/** What the redis and memcached fixtures share: a child process to wait on and kill. */
import { type ChildProcess, spawn } from 'node:child_process';

export interface ServerProcess {
  readonly child: ChildProcess;
  /** stdout and stderr so far, for a failure message. */
  output(): string;
  /** Resolves when the process has exited (at once if it already has). */
  exited(): Promise<void>;
  /** Sends `signal` and waits for the exit. */
  kill(signal: NodeJS.Signals): Promise<void>;
}

export function startProcess(command: string, args: readonly string[]): ServerProcess {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout?.on('data', (d: Buffer) => {
    out += d.toString();
  });
  child.stderr?.on('data', (d: Buffer) => {
    out += d.toString();
  });
  const exit = new Promise<void>((resolve) => {
    child.once('exit', () => resolve());
    child.once('error', (err) => {
      out += String(err);
      resolve();
    });
  });
  return {
    child,
    output: () => out,
    exited: () => exit,
    async kill(signal) {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await exit;
    },
  };
}

/** Polls `ready` until it is true; throws with the server's output if the process exits or time runs out. */
export async function waitReady(
  proc: ServerProcess,
  what: string,
  ready: () => Promise<boolean>,
): Promise<void> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (proc.child.exitCode !== null || proc.child.signalCode !== null) {
      throw new Error(`${what} exited before it was ready:\n${proc.output()}`);
    }
    if (await ready().catch(() => false)) return;
    if (Date.now() > deadline) {
      await proc.kill('SIGKILL');
      throw new Error(`${what} was not ready after 15 s:\n${proc.output()}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}
