/**
 * The Node thin client: the fallback when the native client could not be built at install time.
 * It loads node:net and the protocol only, forwards argv, cwd and environment to the daemon,
 * starting the daemon when none answers, and relays the answer. When the daemon cannot help, it
 * runs the real compiler itself, so a build never breaks because of kiln.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { daemonErrorPath, runtimeDir, runtimeDirProblem, socketPath } from '../paths.js';
import { findExecutable, kilnSelfPaths } from './find-executable.js';
import {
  Action,
  decodeResponse,
  encodeRequest,
  FrameReader,
  type Request,
  RequestFlag,
  type Response,
  UMASK_SHIFT,
} from './protocol.js';

const DAEMON_MAIN = fileURLToPath(new URL('../daemon/main.js', import.meta.url));
const START_TIMEOUT_MS = 10_000;

type Env = NodeJS.ProcessEnv;

function exchange(socket: string, frame: Buffer): Promise<Response> {
  return new Promise((resolve, reject) => {
    const conn = net.connect(socket);
    const reader = new FrameReader();
    let done = false;
    conn.on('connect', () => conn.end(frame));
    conn.on('data', (chunk) => {
      try {
        const body = reader.push(chunk);
        if (body) {
          done = true;
          resolve(decodeResponse(body));
          conn.destroy();
        }
      } catch (err) {
        done = true;
        conn.destroy();
        reject(err);
      }
    });
    conn.on('error', (err) => {
      if (!done) reject(err);
    });
    conn.on('close', () => {
      if (!done) reject(Object.assign(new Error('the daemon closed the connection'), { code: 'ECLOSED' }));
    });
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Starts a daemon in the background with the caller's environment; it outlives this process. */
export function spawnDaemon(env: Env): void {
  fs.mkdirSync(runtimeDir(env), { recursive: true, mode: 0o700 });
  const child = spawn(process.execPath, [DAEMON_MAIN], { detached: true, stdio: 'ignore', env });
  child.unref();
}

/** The daemon's start-up error (a config mistake), when it wrote one since `since` (ms). */
export function startupError(env: Env, since = 0): string | undefined {
  try {
    const file = daemonErrorPath(env);
    if (fs.statSync(file).mtimeMs < since - 1000) return undefined;
    return fs.readFileSync(file, 'utf8').trim();
  } catch {
    return undefined;
  }
}

/**
 * Sends one request, starting the daemon when no one listens. Resolves undefined when the daemon
 * cannot be reached or answered nonsense; a config error that stopped the daemon is printed once.
 */
export async function sendRequest(
  req: Request,
  env: Env,
  autostart = true,
  report = true,
): Promise<Response | undefined> {
  const socket = socketPath(env);
  const frame = encodeRequest(req);
  if (refuseRuntimeDir(env)) return undefined;
  try {
    return await exchange(socket, frame);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (!autostart || (code !== 'ENOENT' && code !== 'ECONNREFUSED')) return undefined;
  }
  const since = Date.now();
  spawnDaemon(env);
  if (refuseRuntimeDir(env)) return undefined; // the daemon's mkdir may have lost a race
  let wait = 5;
  while (Date.now() - since < START_TIMEOUT_MS) {
    await sleep(wait);
    wait = Math.min(wait * 2, 100);
    try {
      return await exchange(socket, frame);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'ECONNREFUSED') return undefined;
      const failure = startupError(env, since);
      if (failure) {
        if (report) process.stderr.write(`kiln: the daemon could not start: ${failure}\n`);
        return undefined;
      }
    }
  }
  return undefined;
}

/** Says so and returns true when the runtime dir is not safely ours (the caller compiles locally). */
function refuseRuntimeDir(env: Env): boolean {
  const problem = runtimeDirProblem(env);
  if (problem) process.stderr.write(`kiln: not using the daemon: ${problem}; compiling without the cache\n`);
  return problem !== undefined;
}

function writeAll(stream: NodeJS.WriteStream, data: Buffer): Promise<void> {
  return new Promise((resolve) => {
    if (data.length === 0) resolve();
    else stream.write(data, () => resolve());
  });
}

/** Runs a program with inherited stdio and returns the exit status a shell would report. */
function runInherited(program: string, argv: readonly string[]): number {
  const result = spawnSync(program, argv.slice(1), { argv0: argv[0], stdio: 'inherit' });
  if (result.error) {
    process.stderr.write(`kiln: cannot run ${program}: ${result.error.message}\n`);
    return (result.error as NodeJS.ErrnoException).code === 'ENOENT' ? 127 : 126;
  }
  if (result.signal) {
    process.kill(process.pid, result.signal);
  }
  return result.status ?? 1;
}

function runLocally(argv: readonly string[], env: Env, self: string): number {
  const compiler = argv[0] ?? '';
  const program = findExecutable(
    compiler,
    env.PATH,
    process.cwd(),
    kilnSelfPaths(self, process.argv[1] ?? ''),
  );
  if (!program) {
    process.stderr.write(`kiln: ${compiler}: command not found\n`);
    return 127;
  }
  return runInherited(program, [program, ...argv.slice(1)]);
}

/**
 * Wraps one compiler call: `argv` is [compiler, ...args]. Returns the exit code to exit with.
 */
export async function runCompile(
  argv: readonly string[],
  self: string,
  env: Env = process.env,
): Promise<number> {
  if (env.KILN_DISABLE === '1' || env.KILN_DISABLE === 'true') return runLocally(argv, env, self);
  let flags = 0;
  if (process.stdout.isTTY) flags |= RequestFlag.STDOUT_TTY;
  if (process.stderr.isTTY) flags |= RequestFlag.STDERR_TTY;
  if (process.stdin.isTTY) flags |= RequestFlag.STDIN_TTY;
  flags |= RequestFlag.UMASK | ((process.umask() & 0o777) << UMASK_SHIFT);
  const req: Request = {
    flags,
    self: Buffer.from(self),
    cwd: Buffer.from(process.cwd()),
    argv: argv.map((a) => Buffer.from(a)),
    env: Object.entries(env).map(([k, v]) => Buffer.from(`${k}=${v ?? ''}`)),
  };
  const res = await sendRequest(req, env);
  if (res?.action === Action.RESULT) {
    await writeAll(process.stdout, res.stdout);
    await writeAll(process.stderr, res.stderr);
    return res.exitCode;
  }
  if (res?.action === Action.EXEC) return runInherited(res.program, res.argv);
  return runLocally(argv, env, self);
}

/** Sends a control command (stats, zero-stats, clear, stop, ping) and returns its output. */
export async function control(
  command: string,
  env: Env,
  autostart: boolean,
  args: readonly string[] = [],
): Promise<Response | undefined> {
  const req: Request = {
    flags: RequestFlag.CONTROL,
    self: Buffer.alloc(0),
    cwd: Buffer.from(process.cwd()),
    argv: [command, ...args].map((a) => Buffer.from(a)),
    env: [],
  };
  // Commands report a start-up failure themselves (see controlOrFail).
  return sendRequest(req, env, autostart, false);
}
