/**
 * The scheduler's and worker's logs as an operator runs them: log_file reopened on SIGHUP the way
 * logrotate works (move the file, signal, the next lines land in a new file at the configured
 * path), and under systemd's journal (JOURNAL_STREAM names stderr) plain lines with `<N>`
 * priorities and no timestamps of kiln's own. Real kiln-dist processes, real HTTPS on 127.0.0.1.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type ClusterFiles,
  clusterFetch,
  clusterFiles,
  KILN_DIST,
  type ServerProcess,
  startServer,
  writeSchedulerConfig,
  writeWorkerConfig,
} from './helpers/cluster.js';
import { removeTree } from './helpers/kiln.js';
import { have } from './helpers/prereq.js';

let dir: string;
let files: ClusterFiles;
const started: ServerProcess[] = [];
const children: ChildProcess[] = [];

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));
const read = (file: string) => (fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '');

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-server-log-'));
  files = clusterFiles(dir);
});

afterAll(async () => {
  for (const s of started) await s.stop('SIGKILL');
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  removeTree(dir);
});

/**
 * Moves `log` away, sends SIGHUP, and asks `url` until a line lands in a new file at `log`. Then
 * every line before the move is in the moved file only, every line after it in the new one only.
 */
async function rotate(server: ServerProcess, log: string, url: string): Promise<void> {
  const get = clusterFetch(files);
  expect((await get(`${url}/healthz?before-rotation`)).status).toBe(200);
  await pause(50);
  expect(read(log)).toContain('/healthz?before-rotation');
  fs.renameSync(log, `${log}.1`);
  server.proc.kill('SIGHUP');
  const end = Date.now() + 10_000;
  let n = 0;
  while (!read(log).includes('/healthz?after-') && Date.now() < end) {
    await get(`${url}/healthz?after-${n++}`);
    await pause(50);
  }
  expect((await get(`${url}/healthz?late`)).status).toBe(200);
  await pause(50);
  const now = read(log);
  const old = read(`${log}.1`);
  expect(now).toContain('/healthz?late');
  expect(now).not.toContain('before-rotation');
  expect(old).toContain('/healthz?before-rotation');
  expect(old).not.toContain('/healthz?late');
  // Still JSON lines, and the server lives on.
  for (const line of now.trim().split('\n')) expect(() => JSON.parse(line)).not.toThrow();
  expect(server.proc.exitCode).toBeNull();
  expect(server.proc.signalCode).toBeNull();
}

describe('log_file and SIGHUP', () => {
  it('the scheduler reopens log_file: lines after the signal land in a new file at the path', async () => {
    const config = writeSchedulerConfig(files, 0, 'log_level = "info"\nlog_file = "scheduler.log"');
    const scheduler = await startServer(['scheduler', '--config', config]);
    started.push(scheduler);
    await rotate(scheduler, path.join(dir, 'scheduler.log'), scheduler.url);
  }, 30_000);

  it.skipIf(!have('bwrap'))(
    'the worker reopens its log_file the same way',
    async () => {
      const scheduler = started[0]!;
      const log = path.join(dir, 'w1.log');
      const worker = await startServer([
        'worker',
        '--config',
        writeWorkerConfig(files, 'w1', scheduler.url, `log_level = "info"\nlog_file = "${log}"`),
      ]);
      started.push(worker);
      await rotate(worker, log, worker.url);
    },
    30_000,
  );
});

describe('under systemd (JOURNAL_STREAM)', () => {
  it('writes <N>-prefixed lines to stderr, without timestamps, when stderr is the journal stream', async () => {
    const sub = path.join(dir, 'journal');
    const jfiles = clusterFiles(sub);
    const config = writeSchedulerConfig(jfiles, 0, 'log_level = "info"\ninsecure = true');
    const stderrFile = path.join(sub, 'stderr');
    const fd = fs.openSync(stderrFile, 'w');
    const st = fs.fstatSync(fd, { bigint: true });
    const { NODE_EXTRA_CA_CERTS: _, ...env } = process.env;
    const proc = spawn(process.execPath, [KILN_DIST, 'scheduler', '--config', config], {
      env: { ...env, JOURNAL_STREAM: `${st.dev}:${st.ino}` },
      stdio: ['ignore', 'pipe', fd],
    });
    children.push(proc);
    fs.closeSync(fd);
    let stdout = '';
    proc.stdout!.on('data', (c: Buffer) => {
      stdout += c;
    });
    const end = Date.now() + 20_000;
    let m: RegExpExecArray | null = null;
    while (!m && Date.now() < end) {
      await pause(50);
      m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(read(stderrFile));
    }
    expect(m, read(stderrFile)).not.toBeNull();
    const url = m![1]!;
    expect((await fetch(`${url}/healthz`)).status).toBe(200);
    expect((await fetch(`${url}/api/v1/status`)).status).toBe(401);
    await pause(100);
    const lines = read(stderrFile).trimEnd().split('\n');
    expect(lines).toContain(
      '<4>kiln-dist: insecure = true: serving plain HTTP; tokens and job data cross the network readable',
    );
    expect(lines).toContain(`<6>kiln-dist: scheduler listening on ${url}`);
    // A request: where it went, then how it ended, tied by its id.
    const incoming = lines
      .map((l) => /^<6>incoming request GET \/healthz \((req-\w+)\)$/.exec(l))
      .find(Boolean);
    expect(incoming, lines.join('\n')).toBeTruthy();
    const id = incoming![1]!;
    expect(
      lines.some((l) => new RegExp(`^<6>request completed 200 \\d+\\.\\d ms \\(${id}\\)$`).test(l)),
    ).toBe(true);
    expect(lines.some((l) => /^<6>request completed 401 \d+\.\d ms \(req-\w+\)$/.test(l))).toBe(true);
    // Every line has a priority, none a timestamp or JSON; nothing on stdout.
    for (const line of lines) {
      expect(line).toMatch(/^<[0-7]>/);
      expect(line).not.toMatch(/\d{4}-\d\d-\d\dT\d\d:\d\d|"level"|"time"/);
    }
    expect(stdout).toBe('');
    // A JOURNAL_STREAM that names another file (stderr is a pipe here): plain lines, no prefixes.
    const plain = await startServer(['scheduler', '--config', config], {
      env: { JOURNAL_STREAM: `${st.dev}:${st.ino}` },
    });
    started.push(plain);
    expect(plain.output()).toContain(`kiln-dist: scheduler listening on ${plain.url}`);
    expect(plain.output()).not.toContain('<6>');
  }, 30_000);
});
