/**
 * Issue 17, items 2 and 6: commands that work while config.toml has a mistake, a daemon that
 * picks up an edited config without --stop-server, and ccache's -C, -M, -p and
 * `--stats-format json` alone; KILN_DIST_* overrides and KILN_NO_DIST for one build.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { type ClientKind, KilnSandbox } from './helpers/kiln.js';
import { have } from './helpers/prereq.js';

have('gcc');
let sb: KilnSandbox;
afterEach(() => sb?.dispose());

const configFile = (s: KilnSandbox) => path.join(s.env.XDG_CONFIG_HOME!, 'kiln', 'config.toml');
const writeConfig = (s: KilnSandbox, text: string) => {
  fs.mkdirSync(path.dirname(configFile(s)), { recursive: true });
  fs.writeFileSync(configFile(s), text);
};

describe.each(['native', 'node'] as ClientKind[])('%s client', (kind) => {
  it('a broken config.toml: a running daemon keeps its settings, control commands still work, compiles say file:line', () => {
    sb = new KilnSandbox(kind);
    sb.file('a.c', 'int a;\n');
    writeConfig(sb, 'cache_size = "2G"\n');
    expect(sb.kiln(['gcc', '-c', 'a.c']).status).toBe(0);
    const pid = sb.daemonPid();
    writeConfig(sb, 'cache_size = "2G"\ncache_dri = "/tmp/x"\n');
    // The running daemon serves with the settings from before, and says why once in its log.
    const hit = sb.kiln(['gcc', '-c', 'a.c']);
    expect([hit.status, hit.stderr]).toEqual([0, '']);
    expect(sb.kiln(['gcc', '-c', 'a.c']).status).toBe(0);
    expect(sb.stats()).toMatchObject({ stats: { hitsDirect: 2 }, cacheLimit: 2 * 1024 ** 3 });
    expect(
      sb
        .log()
        .match(
          /changed but cannot be used, still using the settings from before: unknown config key "cache_dri"/g,
        ),
    ).toHaveLength(1);
    expect(sb.kiln(['-z']).status).toBe(0);
    expect(sb.kiln(['-C']).stdout).toMatch(/^kiln: cleared [1-9]\d* cache entries in /);
    expect(sb.daemonPid()).toBe(pid);
    // The README's advice works exactly when needed.
    const stop = sb.kiln(['--stop-server']);
    expect([stop.status, stop.stdout]).toEqual([0, 'kiln: daemon stopped\n']);
    // Without a daemon: a compile says what is wrong in one line and compiles locally.
    fs.rmSync(path.join(sb.work, 'a.o'));
    const local = sb.kiln(['gcc', '-c', 'a.c']);
    expect(local.status).toBe(0);
    expect(local.stderr).toBe(
      `kiln: the daemon could not start: unknown config key "cache_dri" in ${configFile(sb)}:2 (did you mean "cache_dir"?) (known keys: cache_dir, cache_size, log_level, idle_timeout, direct_mode, depend_mode, daemon_workers, umask, cache, dist)\n`,
    );
    expect(fs.existsSync(path.join(sb.work, 'a.o'))).toBe(true);
    for (const cmd of [['-s'], ['-z'], ['-C'], ['-p'], ['--start-server']]) {
      const r = sb.kiln(cmd);
      expect(r.status, cmd[0]).toBe(2);
      expect(r.stderr.split('\n').filter(Boolean), cmd[0]).toHaveLength(1);
      expect(r.stderr, cmd[0]).toContain(`unknown config key "cache_dri" in ${configFile(sb)}:2`);
    }
    expect(sb.kiln(['--stop-server']).stdout).toBe('kiln: no daemon was running\n');
  });
});

describe('the daemon follows config.toml', () => {
  it('an edited cache_size (here by -M) is used by the next request, without a restart', () => {
    sb = new KilnSandbox();
    expect(sb.stats().cacheLimit).toBe(10 * 1024 ** 3);
    const pid = sb.daemonPid();
    writeConfig(sb, '# mine\nidle_timeout = 900\n\n[dist]\nscheduler_url = "https://127.0.0.1:1"\n');
    const set = sb.kiln(['-M', '1.5G']);
    expect(set.stdout).toBe(`kiln: set cache_size = "1.5G" in ${configFile(sb)} (1.5 GiB)\n`);
    expect(fs.readFileSync(configFile(sb), 'utf8')).toBe(
      'cache_size = "1.5G"\n# mine\nidle_timeout = 900\n\n[dist]\nscheduler_url = "https://127.0.0.1:1"\n',
    );
    expect(sb.stats().cacheLimit).toBe(1.5 * 1024 ** 3);
    expect(sb.kiln(['--max-size', '700M']).status).toBe(0);
    expect(fs.readFileSync(configFile(sb), 'utf8').split('\n').slice(0, 2)).toEqual([
      'cache_size = "700M"',
      '# mine',
    ]);
    expect(sb.kiln(['-s']).stdout).toMatch(/Max cache size\s+700\.0 MiB\n/);
    expect(sb.daemonPid()).toBe(pid);
    expect(sb.log()).toMatch(/config file .*config\.toml changed: reloaded/);
    for (const bad of ['huge', '0', '']) expect(sb.kiln(['-M', bad].filter(Boolean)).status).toBe(2);
  });

  it('a [dist] table added later is used by the next compile; KILN_NO_DIST=1 keeps one build local', () => {
    sb = new KilnSandbox();
    sb.file('a.c', 'int a;\n');
    sb.file('b.c', 'int b;\n');
    sb.file('c.c', 'int c;\n');
    expect(sb.kiln(['gcc', '-c', 'a.c']).status).toBe(0);
    // Nothing listens on port 1: a distributed compile fails on the way and compiles locally.
    writeConfig(
      sb,
      '[dist]\nscheduler_url = "https://127.0.0.1:1"\nforce_remote_build = true\nconnect_timeout = 1\n',
    );
    const noDist = sb.kiln(['gcc', '-c', 'c.c'], { env: { ...sb.env, KILN_NO_DIST: '1' } });
    expect(noDist.status).toBe(0);
    expect(sb.stats().stats).toMatchObject({ misses: 2, distErrors: {}, distLocal: {} });
    expect(sb.kiln(['gcc', '-c', 'b.c']).status).toBe(0);
    expect(sb.stats().stats).toMatchObject({ misses: 3, distErrors: { 'scheduler unreachable': 1 } });
  });
});

describe('commands', () => {
  it('--stats-format json alone prints the stats as JSON', () => {
    sb = new KilnSandbox();
    for (const args of [['--stats-format', 'json'], ['--stats-format=json']]) {
      const r = sb.kiln(args);
      expect(r.status, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout)).toMatchObject({ stats: { requests: 0 } });
    }
    expect(sb.kiln(['--stats-format', 'text']).stdout).toMatch(/Compile requests\s+0\n/);
  });

  it('-C clears results and manifests and keeps packaged toolchains unless --toolchains', () => {
    sb = new KilnSandbox();
    sb.file('a.c', 'int a;\n');
    expect(sb.kiln(['gcc', '-c', 'a.c']).status).toBe(0);
    const toolchain = path.join(sb.cacheDir, 'toolchains', 'x.tar.gz');
    fs.mkdirSync(path.dirname(toolchain), { recursive: true });
    fs.writeFileSync(toolchain, 'x');
    expect(sb.kiln(['--clear']).stdout).toMatch(/^kiln: cleared [1-9]\d* cache entries in \S+\/cache\n$/);
    expect(fs.existsSync(toolchain)).toBe(true);
    expect(sb.stats().cacheSize).toBe(0);
    expect(sb.kiln(['gcc', '-c', 'a.c']).status).toBe(0);
    expect(sb.stats().stats).toMatchObject({ misses: 2, hitsDirect: 0 });
    expect(sb.kiln(['-C', '--toolchains']).stdout).toMatch(
      /^kiln: cleared [1-9]\d* cache entries and the packaged toolchains in \S+\/cache\n$/,
    );
    expect(fs.existsSync(toolchain)).toBe(false);
    expect(sb.kiln(['-C', '--all']).status).toBe(2);
  });

  it('-p shows every setting with where it came from; KILN_DIST_* override [dist] keys', () => {
    sb = new KilnSandbox();
    writeConfig(
      sb,
      'idle_timeout = 60\n\n[dist]\nscheduler_url = "https://sched:10600"\njob_timeout = 100\n[dist.auth]\ntype = "none"\n',
    );
    const env = { ...sb.env, KILN_DIST_JOB_TIMEOUT: '30', KILN_DIST_FORCE_REMOTE_BUILD: 'true' };
    const r = sb.kiln(['--show-config'], { env });
    expect(r.status, r.stderr).toBe(0);
    const file = configFile(sb);
    expect(r.stdout).toContain(`config file: ${file}\n`);
    expect(r.stdout).toContain('(environment variable KILN_CACHE_DIR) cache_dir = ');
    expect(r.stdout).toContain('(default) cache_size = 10.0 GiB\n');
    // One hit worker per CPU this process may use beyond the first, at most 15.
    const workers = Math.max(0, Math.min(os.availableParallelism() - 1, 15));
    expect(r.stdout).toContain(`(default) daemon_workers = ${workers}\n`);
    expect(r.stdout).toContain(`(${file}:1) idle_timeout = 60\n`);
    expect(r.stdout).toContain(`(${file}:4) dist.scheduler_url = https://sched:10600\n`);
    expect(r.stdout).toContain('(environment variable KILN_DIST_JOB_TIMEOUT) dist.job_timeout = 30\n');
    expect(r.stdout).toContain(
      '(environment variable KILN_DIST_FORCE_REMOTE_BUILD) dist.force_remote_build = true\n',
    );
    expect(r.stdout).toContain(`(${file}:7) dist.auth.type = none\n`);
    expect(r.stdout).toContain('(default) dist.connect_timeout = 5\n');
    // Environment alone configures a cluster; a bad value names its variable.
    fs.rmSync(file);
    const only = sb.kiln(['-p'], {
      env: { ...sb.env, KILN_DIST_SCHEDULER_URL: 'https://s:1', KILN_DIST_RESOLVERS: 'icecc, ./mine.js' },
    });
    expect(only.stdout).toContain(
      '(environment variable KILN_DIST_SCHEDULER_URL) dist.scheduler_url = https://s:1\n',
    );
    expect(only.stdout).toContain(
      '(environment variable KILN_DIST_RESOLVERS) dist.resolvers = ["icecc","./mine.js"]\n',
    );
    const bad = sb.kiln(['-p'], {
      env: { ...sb.env, KILN_DIST_SCHEDULER_URL: 'https://s:1', KILN_DIST_INSECURE: 'maybe' },
    });
    expect(bad.status).toBe(2);
    expect(bad.stderr).toBe(
      'kiln: invalid value for "dist.insecure" in environment variable KILN_DIST_INSECURE: expected true or false\n',
    );
  });

  it('[cache] base_dir: shown with its origin, KILN_BASE_DIR over it, a bad one named', () => {
    sb = new KilnSandbox();
    writeConfig(sb, '[cache]\nbase_dir = "/home/you/./x/../src//"\n');
    const file = configFile(sb);
    expect(sb.kiln(['-p']).stdout).toContain(`(${file}:2) cache.base_dir = /home/you/src\n`);
    const env = { ...sb.env, KILN_BASE_DIR: '/work' };
    expect(sb.kiln(['-p'], { env }).stdout).toContain(
      '(environment variable KILN_BASE_DIR) cache.base_dir = /work\n',
    );
    writeConfig(sb, '[cache]\nbase_dir = "src"\n');
    const relative = sb.kiln(['-p']);
    expect(relative.status).toBe(2);
    expect(relative.stderr).toBe(
      `kiln: invalid value for "cache.base_dir" in ${file}:2: expected an absolute directory other than / (such as "/home/you/src")\n`,
    );
    const root = sb.kiln(['-p'], { env: { ...sb.env, KILN_BASE_DIR: '/' } });
    expect(root.stderr).toBe(
      'kiln: invalid value for "cache.base_dir" in environment variable KILN_BASE_DIR: expected an absolute directory other than / (such as "/home/you/src")\n',
    );
    writeConfig(sb, '[cache]\nbase_dr = "/src"\n');
    expect(sb.kiln(['-p']).stderr).toBe(
      `kiln: unknown config key "base_dr" in ${file}:2 (did you mean "base_dir"?) (known keys: remote, base_dir)\n`,
    );
    writeConfig(sb, '');
    expect(sb.kiln(['-p']).stdout).toContain('(default) cache.base_dir = (unset)\n');
  });
});
