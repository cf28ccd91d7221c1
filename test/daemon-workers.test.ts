/**
 * The daemon's hit workers: processes that accept on the daemon's socket and answer direct-mode
 * hits, handing everything else to the daemon. Real daemon, real workers, real gcc/g++.
 */
import fs from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { KilnSandbox } from './helpers/kiln.js';

interface DaemonInfo {
  pid: number;
  workers: { pid: number; hits: number }[];
}

let sb: KilnSandbox | undefined;
afterEach(() => {
  sb?.dispose();
  sb = undefined;
});

/** Running (a zombie, exited but not yet collected by its parent, is not). */
const alive = (pid: number) => {
  try {
    return fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.[0] !== 'Z';
  } catch {
    return false;
  }
};
const parentOf = (pid: number) =>
  Number(fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')[1]);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function daemonInfo(s: KilnSandbox): DaemonInfo {
  const r = s.kiln(['--show-stats', '--stats-format', 'json']);
  expect(r.status).toBe(0);
  return (JSON.parse(r.stdout) as { daemon: DaemonInfo }).daemon;
}

async function waitFor(what: string, check: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

const SOURCES: Record<string, string> = {
  'a.c': '#include <stdio.h>\nint a(void) { return puts("a"); }\n',
  'b.c': '#include <string.h>\nint b(const char *s) { return (int)strlen(s); }\n',
  'c.cpp':
    '#include <string>\n#include <vector>\nint c() { std::vector<std::string> v{"x"}; return (int)v.size(); }\n',
  'd.cpp': '#include <map>\nint d() { std::map<int, int> m; m[1] = 2; return m[1]; }\n',
};
const compiler = (file: string) => (file.endsWith('.cpp') ? 'g++' : 'gcc');

/** Two compiles of each source: the first stores, the second hits and settles the manifest. */
function fill(s: KilnSandbox): void {
  for (const [file, text] of Object.entries(SOURCES)) s.file(file, text);
  for (const file of Object.keys(SOURCES))
    for (let i = 0; i < 2; i++)
      expect(s.kiln([compiler(file), '-O2', '-c', file, '-o', `${file}.o`]).status).toBe(0);
}

describe('daemon hit workers', () => {
  it('answer hits of a parallel build beside the daemon: each hit counted once, objects as plain gcc makes them', async () => {
    sb = new KilnSandbox('native', { KILN_DAEMON_WORKERS: '2' });
    const s = sb;
    fill(s);
    const before = s.stats().stats;
    const info = daemonInfo(s);
    expect(info.workers).toHaveLength(2);
    for (const w of info.workers) expect(parentOf(w.pid)).toBe(info.pid);

    const files = Object.keys(SOURCES);
    const n = 48;
    const runs = await Promise.all(
      Array.from({ length: n }, (_, i) => {
        const file = files[i % files.length]!;
        return s.runAsync([s.client, compiler(file), '-O2', '-c', file, '-o', `out${i}.o`]);
      }),
    );
    expect(runs.map((r) => [r.status, r.stderr])).toEqual(Array(n).fill([0, '']));
    for (const file of files) {
      expect(s.run([compiler(file), '-O2', '-c', file, '-o', 'ref.o']).status).toBe(0);
      for (let i = files.indexOf(file); i < n; i += files.length)
        expect(s.read(`out${i}.o`).equals(s.read('ref.o'))).toBe(true);
    }

    const after = s.stats().stats;
    expect(after.hitsDirect - before.hitsDirect).toBe(n);
    expect(after.requests - before.requests).toBe(n);
    expect(after.misses).toBe(before.misses);
    expect(after.errors).toEqual({});
    // The workers took part: their hits are in the totals above, not counted twice.
    const workerHits = daemonInfo(s).workers.reduce((sum, w) => sum + w.hits, 0);
    expect(workerHits).toBeGreaterThan(0);
    expect(workerHits).toBeLessThanOrEqual(after.hitsDirect);
    // `kiln -s` says so too.
    const text = s.kiln(['-s']).stdout;
    expect(text).toMatch(/^Hit workers \(running\) +2$/m);
    expect(text).toMatch(new RegExp(`^  direct hits they answered +${workerHits}$`, 'm'));
  });

  it('hand misses, control commands and calls they do not cache to the daemon, which counts them once', async () => {
    sb = new KilnSandbox('native', { KILN_DAEMON_WORKERS: '3' });
    const s = sb;
    s.file('m.c', 'int m(void) { return 1; }\n');
    // Many misses at once: whichever process accepts them, the daemon compiles each once.
    const n = 24;
    for (let i = 0; i < n; i++) s.file(`m${i}.c`, `int m${i}(void) { return ${i}; }\n`);
    const runs = await Promise.all(
      Array.from({ length: n }, (_, i) => s.runAsync([s.client, 'gcc', '-c', `m${i}.c`])),
    );
    expect(runs.map((r) => r.status)).toEqual(Array(n).fill(0));
    // A link is not cached: run as is, counted once.
    expect(s.kiln(['gcc', '-o', 'm', 'm0.o', 'm1.o', '-nostartfiles', '-Wl,-e,m0']).status).toBe(0);
    const st = s.stats().stats;
    expect(st.misses).toBe(n);
    expect(st.requests).toBe(n + 1);
    expect(Object.values(st.nonCacheable).reduce((a, b) => a + b, 0)).toBe(1);
    for (let i = 0; i < n; i++) {
      expect(s.run(['gcc', '-c', `m${i}.c`, '-o', 'ref.o']).status).toBe(0);
      expect(s.read(`m${i}.o`).equals(s.read('ref.o'))).toBe(true);
    }
    expect(s.kiln(['--zero-stats']).status).toBe(0);
    expect(s.stats().stats.requests).toBe(0);
  });

  it('are started again with the new settings when the config file changes', async () => {
    sb = new KilnSandbox('native');
    const s = sb;
    s.writeConfig('daemon_workers = 1\n');
    fill(s);
    const first = daemonInfo(s);
    expect(first.workers).toHaveLength(1);
    const old = first.workers[0]!.pid;

    // Direct mode off: the new workers answer nothing themselves, hits come by preprocessor mode.
    s.writeConfig('daemon_workers = 2\ndirect_mode = false\n');
    const second = daemonInfo(s);
    expect(second.pid).toBe(first.pid);
    expect(second.workers).toHaveLength(2);
    expect(second.workers.map((w) => w.pid)).not.toContain(old);
    await waitFor('the old worker to exit', () => !alive(old));
    // Stored so far under depend-mode keys: the first call in preprocessor mode stores its own.
    expect(s.kiln(['gcc', '-O2', '-c', 'a.c', '-o', 'a.c.o']).status).toBe(0);
    const before = s.stats().stats;
    const runs = await Promise.all(
      Array.from({ length: 16 }, (_, i) =>
        s.runAsync([s.client, 'gcc', '-O2', '-c', 'a.c', '-o', `x${i}.o`]),
      ),
    );
    expect(runs.map((r) => r.status)).toEqual(Array(16).fill(0));
    const after = s.stats().stats;
    expect(after.hitsPreprocessed - before.hitsPreprocessed).toBe(16);
    expect(after.hitsDirect).toBe(before.hitsDirect);
    expect(daemonInfo(s).workers.every((w) => w.hits === 0)).toBe(true);
  });

  it('go with the daemon, and one that dies is replaced', async () => {
    sb = new KilnSandbox('native', { KILN_DAEMON_WORKERS: '2' });
    const s = sb;
    fill(s);
    let info = daemonInfo(s);
    const [w1, w2] = info.workers.map((w) => w.pid) as [number, number];

    process.kill(w1, 'SIGKILL');
    await waitFor('a new worker', () => {
      const now = daemonInfo(s).workers.map((w) => w.pid);
      return now.length === 2 && !now.includes(w1) && now.includes(w2);
    });
    expect(s.kiln(['gcc', '-O2', '-c', 'a.c', '-o', 'a.c.o']).status).toBe(0);

    // --stop-server returns when the daemon and every worker are gone.
    info = daemonInfo(s);
    expect(s.kiln(['--stop-server']).stdout).toBe('kiln: daemon stopped\n');
    expect(alive(info.pid)).toBe(false);
    for (const w of info.workers) expect(alive(w.pid)).toBe(false);

    // A daemon killed outright: its workers notice the closed channel and exit.
    expect(s.kiln(['gcc', '-O2', '-c', 'a.c', '-o', 'a.c.o']).status).toBe(0);
    info = daemonInfo(s);
    expect(info.workers).toHaveLength(2);
    process.kill(info.pid, 'SIGKILL');
    for (const w of info.workers) await waitFor(`worker ${w.pid} to exit`, () => !alive(w.pid), 5000);
    // The next call starts a new daemon.
    expect(s.kiln(['gcc', '-O2', '-c', 'a.c', '-o', 'a.c.o']).status).toBe(0);
    expect(daemonInfo(s).pid).not.toBe(info.pid);
  });

  it('none with daemon_workers = 0: the daemon answers alone', () => {
    sb = new KilnSandbox('native', { KILN_DAEMON_WORKERS: '0' });
    fill(sb);
    const info = daemonInfo(sb);
    expect(info.workers).toEqual([]);
    const children = fs
      .readdirSync('/proc')
      .filter((p) => /^\d+$/.test(p) && alive(Number(p)))
      .filter((p) => {
        try {
          return parentOf(Number(p)) === info.pid;
        } catch {
          return false;
        }
      });
    expect(children).toEqual([]);
    expect(sb.stats().stats.hitsDirect).toBe(4);
  });
});
