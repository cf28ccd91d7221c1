/**
 * `kiln-dist scheduler` as a process: it runs with its own V8 heap flags (relaunched: by
 * process.execve where Node has it, else as the child of a launcher that waits), the user's own
 * flags win, and killing what was started stops the server, even with SIGKILL.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  clusterFiles,
  clusterStatus,
  type ServerProcess,
  startServer,
  writeSchedulerConfig,
} from './helpers/cluster.js';
import { removeTree } from './helpers/kiln.js';

const FLAG = '--max-semi-space-size=4';
let dir: string;
let config: string;
let clientToken: string;
const started: ServerProcess[] = [];

/** The process that serves: the launcher's only child when there is one. */
function serverPid(launcher: number): number {
  const children = fs
    .readFileSync(`/proc/${launcher}/task/${launcher}/children`, 'utf8')
    .split(' ')
    .filter(Boolean);
  return children.length ? Number(children[0]) : launcher;
}

const argvOf = (pid: number) => fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');

/** Gone or a zombie: either way it holds no port any more. */
function ended(pid: number): boolean {
  try {
    return /^\d+ \(.*\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return true;
  }
}

async function start(env: NodeJS.ProcessEnv = {}): Promise<ServerProcess> {
  const s = await startServer(['scheduler', '--config', config], { env });
  started.push(s);
  return s;
}

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-sched-proc-'));
  const files = clusterFiles(dir);
  clientToken = files.clientToken;
  config = writeSchedulerConfig(files);
});

afterAll(async () => {
  for (const s of started) await s.stop('SIGKILL');
  removeTree(dir);
});

describe('kiln-dist scheduler process', () => {
  it('serves from a Node started with its heap flags', async () => {
    const s = await start();
    const pid = serverPid(s.proc.pid!);
    expect(argvOf(pid)).toContain(FLAG);
    expect((await clusterStatus(s.url, clientToken)).totals.workers).toBe(0);
    await s.stop('SIGTERM');
    expect(s.proc.exitCode).toBe(0);
  });

  it('keeps the flags the user gave in NODE_OPTIONS', async () => {
    const s = await start({ NODE_OPTIONS: '--max-semi-space-size=8' });
    expect(serverPid(s.proc.pid!)).toBe(s.proc.pid);
    expect(argvOf(s.proc.pid!)).not.toContain(FLAG);
    await s.stop();
  });

  it('ends when what was started is killed with SIGKILL, so a restart finds its port free', async () => {
    const s = await start();
    const pid = serverPid(s.proc.pid!);
    await s.stop('SIGKILL');
    const deadline = Date.now() + 5000;
    while (!ended(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(ended(pid)).toBe(true);
  });
});
