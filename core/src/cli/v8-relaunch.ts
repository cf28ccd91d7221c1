/**
 * Runs this command again in a Node started with extra V8 flags. V8 sizes its heap from flags read
 * when the isolate is created: `v8.setFlagsFromString('--max-semi-space-size=…')` at run time is
 * ignored (measured on Node 20, 22 and 24: the young generation still grows to 32–64 MB), and
 * `--semi-space-growth-factor=1`, which Node 20 honours at run time, is ignored by Node 24.
 *
 * Where Node has `process.execve` (22.15+, 23.11+) the process image is replaced: same pid,
 * nothing left behind. Elsewhere (Node 20) a child runs the command while this process waits,
 * forwards SIGINT/SIGTERM/SIGHUP and exits with the child's code; the child exits when its launcher dies
 * (even by SIGKILL), so a restarted server never finds its port still taken by an orphan.
 */
import { spawn, spawnSync } from 'node:child_process';
import os from 'node:os';

/** Set in the environment of a child started by the fallback launcher. */
const LAUNCHER_ENV = 'KILN_V8_LAUNCHER';
/** SIGHUP too: it reopens log_file (logrotate signals the pid systemd or the pid file knows). */
const FORWARDED_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

type Execve = (file: string, args: readonly string[], env?: NodeJS.ProcessEnv) => never;

const flagName = (flag: string) => flag.split('=')[0]!.replaceAll('_', '-');

/** True when every flag's name is already on this Node's command line or in NODE_OPTIONS (the user's choice wins). */
function flagsPresent(flags: readonly string[]): boolean {
  const given = [...process.execArgv, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/)].map(flagName);
  return flags.every((f) => given.includes(flagName(f)));
}

/**
 * Whether `process.execPath` can be executed directly. It cannot under qemu-user without binfmt_misc
 * (the aarch64 scheduler test): there an exec fails, and a failed `process.execve` aborts Node.
 */
function canRunSelf(): boolean {
  const r = spawnSync(process.execPath, ['--version'], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  return r.status === 0 && r.stdout.trim() === process.version;
}

/** Runs `args` in a child Node, passing signals on; resolves with its exit code. */
function runChild(args: readonly string[]): Promise<number> {
  const child = spawn(process.execPath, args, {
    // An IPC channel that closes when this process dies, however it dies: see exitWithLauncher.
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    env: { ...process.env, [LAUNCHER_ENV]: '1' },
    // Its own process group: a terminal's Ctrl-C reaches the child once, through the forwarding below.
    detached: true,
  });
  for (const signal of FORWARDED_SIGNALS) process.on(signal, () => child.kill(signal));
  return new Promise((resolve) => {
    child.on('error', () => resolve(1));
    child.on('exit', (code, signal) => resolve(code ?? 128 + (os.constants.signals[signal!] ?? 0)));
  });
}

/**
 * Starts the command again with `flags` unless they are in effect already. Resolves undefined when
 * the caller should go on in this process (flags present, or Node cannot run itself here), else with
 * the exit code of the relaunched command. With `process.execve` it never resolves.
 */
export async function relaunchWithV8Flags(flags: readonly string[]): Promise<number | undefined> {
  if (flagsPresent(flags) || !canRunSelf()) return undefined;
  const args = [...flags, ...process.execArgv, ...process.argv.slice(1)];
  const self = process as { execve?: Execve };
  if (self.execve) self.execve(process.execPath, [process.execPath, ...args], process.env);
  return runChild(args);
}

/** In a child of the fallback launcher: exit as soon as the launcher is gone. */
export function exitWithLauncher(): void {
  if (process.env[LAUNCHER_ENV] !== '1' || !process.channel) return;
  delete process.env[LAUNCHER_ENV];
  // The channel must not keep the process alive once the server has closed.
  process.channel.unref();
  process.once('disconnect', () => process.exit(1));
  // A supervisor that signals every process of the service (systemd's control group) reaches this
  // one twice, directly and through the launcher: the second signal must not cut the close short.
  for (const signal of FORWARDED_SIGNALS) process.on(signal, () => {});
}
