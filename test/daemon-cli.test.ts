/**
 * The daemon's life cycle and the `kiln` commands: start on demand, idle out, many clients at
 * once, stats that survive restarts, loud config errors, masquerade links, make and CMake.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { type ClientKind, KilnSandbox } from './helpers/kiln.js';
import { have } from './helpers/prereq.js';

have('gcc');
let sb: KilnSandbox;
afterEach(() => sb?.dispose());

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe.each(['native', 'node'] as ClientKind[])('%s client', (kind) => {
  it('starts the daemon on demand and the daemon idles out', async () => {
    sb = new KilnSandbox(kind, { KILN_IDLE_TIMEOUT: '1' });
    sb.file('a.c', 'int a;\n');
    expect(sb.daemonPid()).toBeUndefined();
    expect(sb.kiln(['gcc', '-c', 'a.c']).status).toBe(0);
    const pid = sb.daemonPid()!;
    expect(alive(pid)).toBe(true);
    const deadline = Date.now() + 10_000;
    while (alive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    expect(alive(pid)).toBe(false);
    expect(fs.existsSync(path.join(sb.env.KILN_RUNTIME_DIR!, 'daemon.sock'))).toBe(false);
  });

  it('refuses a runtime dir that is not safely its own, says so, and compiles locally', () => {
    sb = new KilnSandbox(kind);
    sb.file('a.c', 'int a(void) { return 1; }\n');
    expect(sb.run(['gcc', '-c', 'a.c', '-o', 'ref.o']).status).toBe(0);
    const rt = sb.env.KILN_RUNTIME_DIR!;
    const mine = path.join(sb.dir, 'mine');
    fs.mkdirSync(mine, { mode: 0o700 });
    // What another local user could have made first: a world-writable dir, a dir of theirs (as
    // root the test can give it away), and a symlink to a dir (ours here: the link is the problem).
    const setups: [string, () => void][] = [
      ['has mode 777', () => fs.mkdirSync(rt, { mode: 0o777 })],
      ['is owned by uid 65534', () => fs.mkdirSync(rt, { mode: 0o700 })],
      ['is a symlink', () => fs.symlinkSync(mine, rt)],
    ];
    for (const [why, setup] of setups) {
      if (why.includes('65534') && process.getuid?.() !== 0) continue; // chown needs root (CI is root)
      fs.rmSync(rt, { recursive: true, force: true });
      setup();
      if (why.includes('777')) fs.chmodSync(rt, 0o777);
      if (why.includes('65534')) fs.chownSync(rt, 65534, 65534);
      fs.rmSync(path.join(sb.work, 'a.o'), { force: true });
      const r = sb.kiln(['gcc', '-c', 'a.c']);
      expect(r.status, r.stderr).toBe(0);
      expect(r.stderr).toContain('kiln: not using the daemon:');
      expect(r.stderr).toContain(why);
      expect(sb.read('a.o').equals(sb.read('ref.o'))).toBe(true);
      // No daemon was started there, and nothing was written into it.
      expect(fs.readdirSync(rt)).toEqual([]);
      expect(sb.daemonPid()).toBeUndefined();
    }
    fs.rmSync(rt, { recursive: true, force: true });
  });

  it('creates the cache dir private to the user (issue 11, item 12)', () => {
    sb = new KilnSandbox(kind);
    sb.file('a.c', 'int a;\n');
    expect(fs.existsSync(sb.cacheDir)).toBe(false);
    expect(sb.kiln(['gcc', '-c', 'a.c']).status).toBe(0);
    expect(fs.statSync(sb.cacheDir).mode & 0o777).toBe(0o700);
  });

  it('serves many concurrent clients (a cold start included) with correct objects', async () => {
    sb = new KilnSandbox(kind);
    const n = 32;
    for (let i = 0; i < n; i++) sb.file(`f${i}.c`, `int f${i}(int x) { return x + ${i % 8}; }\n`);
    const runs = await Promise.all(
      Array.from({ length: n }, (_, i) => sb.runAsync([sb.client, 'gcc', '-O2', '-c', `f${i}.c`])),
    );
    expect(runs.map((r) => r.status)).toEqual(Array(n).fill(0));
    for (let i = 0; i < n; i++) {
      expect(sb.run(['gcc', '-O2', '-c', `f${i}.c`, '-o', 'ref.o']).status).toBe(0);
      expect(sb.read(`f${i}.o`).equals(sb.read('ref.o'))).toBe(true);
    }
    const { stats } = sb.stats();
    expect(stats.requests).toBe(n);
    expect(stats.errors).toEqual({});
    // Only one daemon survives the start-up race.
    expect(sb.kiln(['--stop-server']).stdout).toMatch(/stopped/);
  });
});

/** Every file and directory below `dir` (not `dir` itself), with its stat. */
function tree(dir: string): [string, fs.Stats][] {
  const out: [string, fs.Stats][] = [];
  for (const name of fs.readdirSync(dir)) {
    const p = path.join(dir, name);
    const st = fs.lstatSync(p);
    out.push([p, st]);
    if (st.isDirectory()) out.push(...tree(p));
  }
  return out;
}

/** Creates a local user (and group) for cross-user checks unless there is one; needs root. */
function ensureUser(user: string, group?: string): void {
  const run = (argv: string[]) => spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8' });
  if (group && run(['getent', 'group', group]).status !== 0) expect(run(['groupadd', group]).status).toBe(0);
  if (run(['id', user]).status !== 0) expect(run(['useradd', '-M', '-N', user]).status).toBe(0);
  if (group) expect(run(['usermod', '-a', '-G', group, user]).status).toBe(0);
}

const asUser = (user: string, argv: string[]) =>
  spawnSync('runuser', ['-u', user, '--', ...argv], { encoding: 'utf8', cwd: '/' });

/** The daemon flushes stats every second: waits until stats.json exists. */
function waitForStatsFile(sb: KilnSandbox): string {
  const file = path.join(sb.cacheDir, 'stats.json');
  const end = Date.now() + 5000;
  while (!fs.existsSync(file) && Date.now() < end)
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50);
  return file;
}

describe('the cache dir is private unless `umask` shares it (issue 11, item 12)', () => {
  const root = process.getuid?.() === 0 && have('runuser');

  it('without `umask`, entries, manifests and stats are private even in a cache dir open to others', () => {
    sb = new KilnSandbox();
    sb.file('a.c', 'int a(void) { return 2; }\n');
    // A cache dir an older kiln made with the caller's umask (022), on a path others can traverse.
    fs.chmodSync(sb.dir, 0o711);
    fs.mkdirSync(sb.cacheDir, { mode: 0o755 });
    fs.chmodSync(sb.cacheDir, 0o755);
    const r = sb.run(['sh', '-c', 'umask 022; exec "$0" "$@"', sb.client, 'gcc', '-c', 'a.c']);
    expect(r.status, r.stderr).toBe(0);
    waitForStatsFile(sb);
    // The object is the caller's, with the caller's umask.
    expect(fs.statSync(path.join(sb.work, 'a.o')).mode & 0o777).toBe(0o644);
    const entries = tree(sb.cacheDir);
    const kinds = new Set(entries.map(([p]) => path.relative(sb.cacheDir, p).split('/')[0]));
    expect([...kinds].sort()).toEqual(['m', 'r', 'stats.json', 'tmp']);
    if (root) {
      ensureUser('kiln-other');
      const object = entries.find(
        ([p, st]) => st.isFile() && path.relative(sb.cacheDir, p).startsWith('r/'),
      )![0];
      const cat = asUser('kiln-other', ['cat', object]);
      expect([cat.status, cat.stdout, cat.stderr]).toEqual([1, '', `cat: ${object}: Permission denied\n`]);
    }
    for (const [p, st] of entries) {
      expect(`${path.relative(sb.cacheDir, p)} ${(st.mode & 0o777).toString(8)}`).toBe(
        `${path.relative(sb.cacheDir, p)} ${st.isDirectory() ? '700' : '600'}`,
      );
    }
  });

  it('with umask = "002", a group shares the cache dir: group-readable and writable, whatever the caller\'s umask', () => {
    sb = new KilnSandbox();
    sb.file('a.c', 'int a(void) { return 3; }\n');
    sb.file('../config/kiln/config.toml', 'umask = "002"\n');
    let gid = process.getgid!();
    if (root) {
      ensureUser('kiln-other', 'kiln-share');
      gid = Number(spawnSync('getent', ['group', 'kiln-share'], { encoding: 'utf8' }).stdout.split(':')[2]);
    }
    // The team's dir: group-owned, setgid so that what is made inside stays in the group.
    fs.chmodSync(sb.dir, 0o711);
    fs.mkdirSync(sb.cacheDir);
    fs.chownSync(sb.cacheDir, process.getuid!(), gid);
    fs.chmodSync(sb.cacheDir, 0o2770);
    const r = sb.run(['sh', '-c', 'umask 077; exec "$0" "$@"', sb.client, 'gcc', '-c', 'a.c']);
    expect(r.status, r.stderr).toBe(0);
    waitForStatsFile(sb);
    expect(fs.statSync(path.join(sb.work, 'a.o')).mode & 0o777).toBe(0o600);
    const entries = tree(sb.cacheDir);
    expect(entries.filter(([, st]) => st.isFile()).length).toBeGreaterThanOrEqual(3); // result, manifest, stats
    for (const [p, st] of entries) {
      const rel = path.relative(sb.cacheDir, p);
      expect(`${rel} ${(st.mode & 0o7777).toString(8)} ${st.gid}`).toBe(
        `${rel} ${st.isDirectory() ? '2775' : '664'} ${gid}`,
      );
    }
    if (!root) return;
    const object = entries.find(
      ([p, st]) => st.isFile() && path.relative(sb.cacheDir, p).startsWith('r/'),
    )![0];
    const sum = asUser('kiln-other', ['sha256sum', object]);
    expect(sum.status, sum.stderr).toBe(0);
    expect(sum.stdout).toBe(
      `${createHash('sha256').update(fs.readFileSync(object)).digest('hex')}  ${object}\n`,
    );
    const write = asUser('kiln-other', ['sh', '-c', `echo x > ${path.dirname(object)}/probe`]);
    expect(write.status, write.stderr).toBe(0);
  });

  it('refuses a umask that is not an octal string', () => {
    sb = new KilnSandbox();
    const bad = sb.kiln(['--start-server'], { env: { ...sb.env, KILN_UMASK: '8' } });
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/KILN_UMASK.*an octal umask in quotes, such as "002" or "027"/);
  });
});

describe('commands', () => {
  it('--help, --version and unknown options', () => {
    sb = new KilnSandbox();
    expect(sb.kiln(['--help']).stdout).toMatch(/--show-stats/);
    expect(sb.kiln([]).stdout).toMatch(/Usage/);
    expect(sb.kiln(['--version']).stdout).toMatch(/^kiln \d+\.\d+\.\d+/);
    const bad = sb.kiln(['--frobnicate']);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toBe('kiln: unknown option --frobnicate (see kiln --help)\n');
    expect(sb.kiln(['-s', '--stats-format', 'xml']).stderr).toMatch(/text or json/);
  });

  it('stats in text and JSON, non-cacheable reasons, zeroing, and persistence across restarts', () => {
    sb = new KilnSandbox();
    sb.file('a.c', 'int main(void) { return 0; }\n');
    sb.file('b.c', 'int b;\n');
    const calls: [string[], string | undefined][] = [
      [['-c', 'a.c'], undefined],
      [['-c', 'a.c'], undefined],
      [['a.c', '-o', 'prog'], 'linking'],
      [['-E', 'a.c'], 'preprocessor only (-E)'],
      [['-M', 'a.c'], 'dependency listing only (-M/-MM)'],
      [['-c', 'a.c', 'b.c'], 'multiple source files'],
    ];
    for (const [args] of calls) {
      const got = sb.kiln(['gcc', ...args]);
      const want = sb.run(['gcc', ...args]);
      expect([got.status, got.stdout, got.stderr]).toEqual([want.status, want.stdout, want.stderr]);
    }
    const text = sb.kiln(['--show-stats']).stdout;
    expect(text).toMatch(/Compile requests\s+6\n/);
    expect(text).toMatch(/Cache hits\s+1\n/);
    expect(text).toMatch(/ {2}linking\s+1\n/);
    sb.file('c.cpp', 'int c;\n');
    expect(sb.kiln(['g++', '-c', 'c.cpp']).status).toBe(0);
    // Per language: hits, misses, failed, uncached (the linking call named a .c file: C).
    expect(sb.kiln(['--show-stats']).stdout).toMatch(/ {2}C\s+1\s+1\s+0\s+4\n {2}C\+\+\s+0\s+1\s+0\s+0\n/);
    const { stats } = sb.stats();
    for (const [, reason] of calls) if (reason) expect(stats.nonCacheable[reason], reason).toBe(1);
    sb.kiln(['--stop-server']);
    expect(sb.stats().stats.requests).toBe(7); // read back from disk by a new daemon
    expect(sb.kiln(['--zero-stats']).status).toBe(0);
    expect(sb.stats().stats.requests).toBe(0);
  });

  it('a config mistake is loud, and the build still succeeds', () => {
    sb = new KilnSandbox();
    sb.file('a.c', 'int a;\n');
    sb.file('../config/kiln/config.toml', 'cache_dri = "/tmp/x"\n');
    const r = sb.kiln(['gcc', '-c', 'a.c']);
    expect(r.status).toBe(0);
    expect(r.stderr).toMatch(/kiln: the daemon could not start: unknown config key "cache_dri"/);
    expect(fs.existsSync(path.join(sb.work, 'a.o'))).toBe(true);
    const s = sb.kiln(['--show-stats']);
    expect(s.status).toBe(2);
    expect(s.stderr).toMatch(
      /^kiln: the daemon could not start: unknown config key "cache_dri" in .*config.toml:1 \(did you mean "cache_dir"\?\) \(known keys: cache_dir/,
    );
    expect(s.stderr).not.toMatch(/at .*\.js/); // no stack trace
    const bad = sb.kiln(['--start-server'], { env: { ...sb.env, KILN_CACHE_SIZE: 'huge' } });
    expect(bad.status).toBe(2);
  });

  it('--install-bins makes masquerade links that skip themselves in PATH', () => {
    sb = new KilnSandbox();
    sb.file('a.c', 'int a;\n');
    sb.file('b.cpp', 'int b() { return 1; }\n');
    const bin = path.join(sb.dir, 'masq');
    expect(sb.kiln(['--install-bins', bin]).status).toBe(0);
    for (const name of ['gcc', 'g++', 'cc', 'c++', 'clang', 'clang++']) {
      expect(fs.realpathSync(path.join(bin, name))).toBe(fs.realpathSync(sb.client));
    }
    const env = { ...sb.env, PATH: `${bin}:${sb.env.PATH}` };
    for (let i = 0; i < 2; i++) {
      expect(sb.run(['gcc', '-c', 'a.c'], { env }).status).toBe(0);
      expect(sb.run(['c++', '-c', 'b.cpp'], { env }).status).toBe(0);
      // `kiln gcc` with the masquerade dir first in PATH must not loop into itself.
      expect(sb.run([sb.client, 'cc', '-c', 'a.c'], { env }).status).toBe(0);
    }
    // cc and gcc are the same binary but keep separate entries: driver messages carry the name.
    expect(sb.stats().stats).toMatchObject({ requests: 6, misses: 3, hitsDirect: 3 });
  });

  it('works as CC="kiln gcc" in make and as CMAKE_C_COMPILER_LAUNCHER', () => {
    sb = new KilnSandbox();
    sb.file('src/main.c', '#include "lib.h"\nint main(void) { return lib() - 42; }\n');
    sb.file('src/lib.c', '#include "lib.h"\nint lib(void) { return 42; }\n');
    sb.file('src/lib.h', 'int lib(void);\n');
    sb.file(
      'src/Makefile',
      'prog: main.o lib.o\n\t$(CC) $^ -o $@\n%.o: %.c lib.h\n\t$(CC) -O2 -MMD -c $< -o $@\n',
    );
    sb.file(
      'src/CMakeLists.txt',
      'cmake_minimum_required(VERSION 3.13)\nproject(demo C)\nadd_executable(prog main.c lib.c)\n',
    );
    for (let i = 0; i < 2; i++) {
      expect(sb.run(['make', '-C', 'src', '-B', `CC=${sb.client} gcc`]).status).toBe(0);
    }
    expect(sb.run([path.join(sb.work, 'src', 'prog')]).status).toBe(0);
    // Two compiles a build (-B rebuilds all): misses, then direct hits; the links are not cached.
    expect(sb.stats().stats).toMatchObject({
      requests: 6,
      misses: 2,
      hitsDirect: 2,
      hitsPreprocessed: 0,
      nonCacheable: { linking: 2 },
    });
    if (have('cmake')) {
      const build = path.join(sb.work, 'build');
      const conf = sb.run(['cmake', '-S', 'src', '-B', build, `-DCMAKE_C_COMPILER_LAUNCHER=${sb.client}`]);
      expect(conf.status, conf.stderr).toBe(0);
      /** What kiln counted while `step` ran: CMake puts only the compiles behind the launcher. */
      const counted = (step: () => void) => {
        const before = sb.stats().stats;
        step();
        const after = sb.stats().stats;
        return {
          requests: after.requests - before.requests,
          misses: after.misses - before.misses,
          hitsDirect: after.hitsDirect - before.hitsDirect,
          hitsPreprocessed: after.hitsPreprocessed - before.hitsPreprocessed,
        };
      };
      const cmakeBuild = () => expect(sb.run(['cmake', '--build', build]).status).toBe(0);
      expect(counted(cmakeBuild)).toEqual({ requests: 2, misses: 2, hitsDirect: 0, hitsPreprocessed: 0 });
      expect(sb.run(['cmake', '--build', build, '--target', 'clean']).status).toBe(0);
      expect(fs.existsSync(path.join(build, 'prog'))).toBe(false);
      expect(counted(cmakeBuild)).toEqual({ requests: 2, misses: 0, hitsDirect: 2, hitsPreprocessed: 0 });
      expect(sb.run([path.join(build, 'prog')]).status).toBe(0);
    }
  });
});
