/**
 * A Docker engine for tests: the one already running (DOCKER_HOST or /var/run/docker.sock), else a
 * `dockerd` (Debian's docker.io) the test starts itself, stopped again at the end only then. No
 * registry is reachable: images come from `docker import`-style imports of toolchain roots.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { have } from './prereq.js';

export interface TestEngine {
  readonly socket: string;
  /** Whether this helper started it. */
  readonly started: boolean;
  stop(): Promise<void>;
}

/** Whether an engine answers /_ping at `socket` within `ms`. */
export function ping(socket: string, ms = 2000): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.request({ socketPath: socket, path: '/_ping', timeout: ms }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('error', () => resolve(false));
    req.on('timeout', () => {
      req.destroy();
      resolve(false);
    });
    req.end();
  });
}

async function waitFor(check: () => Promise<boolean>, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await check()) return true;
    await new Promise((r) => setTimeout(r, 200));
  }
  return false;
}

/**
 * Starts a dockerd with its own socket, data root, exec root and pidfile under `dir`: no bridge, no
 * iptables (nothing is exposed; jobs have no network anyway). Rejects when it does not answer in 60 s.
 */
export async function startDockerd(
  dir: string,
  socket = path.join(dir, 'docker.sock'),
  /** Outlives this process (its own process group, not waited for): the shared test engine. */
  keep = false,
): Promise<TestEngine> {
  fs.mkdirSync(dir, { recursive: true });
  const log = fs.openSync(path.join(dir, 'dockerd.log'), 'a');
  const proc: ChildProcess = spawn(
    'dockerd',
    [
      '--iptables=false',
      '--ip6tables=false',
      '--bridge=none',
      `--data-root=${path.join(dir, 'data')}`,
      `--exec-root=${path.join(dir, 'exec')}`,
      `--pidfile=${path.join(dir, 'dockerd.pid')}`,
      `--host=unix://${socket}`,
    ],
    { stdio: ['ignore', log, log], detached: keep },
  );
  if (keep) proc.unref();
  fs.closeSync(log);
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  if (!(await waitFor(() => ping(socket), 60_000))) {
    proc.kill('SIGKILL');
    throw new Error(
      `dockerd did not start: ${fs.readFileSync(path.join(dir, 'dockerd.log'), 'utf8').slice(-2000)}`,
    );
  }
  return {
    socket,
    started: true,
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 20_000);
      await exited;
      clearTimeout(t);
    },
  };
}

const SHARED_DIR = '/var/lib/kiln-test-dockerd';

/**
 * Runs `fn` holding a lock file shared by all test processes: test files run in parallel, and two
 * of them starting dockerd on one data root at once made one fail. A lock whose holder died is
 * taken over.
 */
async function withStartLock<T>(fn: () => Promise<T>): Promise<T> {
  fs.mkdirSync(SHARED_DIR, { recursive: true });
  const lock = path.join(SHARED_DIR, 'start.lock');
  const end = Date.now() + 120_000;
  for (;;) {
    try {
      fs.writeFileSync(lock, String(process.pid), { flag: 'wx' });
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || Date.now() > end) throw err;
      const holder = Number(fs.readFileSync(lock, 'utf8') || 0);
      let alive = holder > 0;
      try {
        if (alive) process.kill(holder, 0);
      } catch {
        alive = false;
      }
      if (!alive) fs.rmSync(lock, { force: true });
      else await new Promise((r) => setTimeout(r, 200));
    }
  }
  try {
    return await fn();
  } finally {
    fs.rmSync(lock, { force: true });
  }
}

/**
 * The engine tests use: a running one, else one started now (as root) and left running for the
 * other test files (they run in parallel and in any order; stopping it at the end of one file
 * took it from another). Undefined when there is none and dockerd is not installed; under CI=true
 * that is a failure (have() throws).
 */
export async function testEngine(): Promise<TestEngine | undefined> {
  const host = process.env.DOCKER_HOST?.startsWith('unix://') ? process.env.DOCKER_HOST.slice(7) : undefined;
  for (const socket of [host, '/var/run/docker.sock', path.join(SHARED_DIR, 'docker.sock')]) {
    if (socket && (await ping(socket))) return { socket, started: false, stop: async () => {} };
  }
  if (!have('dockerd')) return undefined;
  if (process.getuid?.() !== 0) {
    if (process.env.CI === 'true') throw new Error('no Docker engine runs and only root can start dockerd');
    return undefined;
  }
  const socket = path.join(SHARED_DIR, 'docker.sock');
  return withStartLock(async () => {
    if (!(await ping(socket))) await startDockerd(SHARED_DIR, socket, true);
    return { socket, started: false, stop: async () => {} };
  });
}
