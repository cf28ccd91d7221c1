/**
 * kiln outside its git clone: `npm run release`'s tarball installed with `npm install -g --prefix`
 * into a fresh prefix, offline (everything it needs is bundled), then used as a user would: the
 * native client compiles, hits, and `kiln-dist` runs; the bundled plugins resolve from core.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { removeTree, tmpDir } from './helpers/kiln.js';
import { have } from './helpers/prereq.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const available = have('npm') && have('cc');
let dir: string;
let prefix: string;
let env: NodeJS.ProcessEnv;

beforeAll(() => {
  if (!available) return;
  dir = tmpDir('kiln-install-');
  prefix = path.join(dir, 'prefix');
  const out = path.join(dir, 'release');
  const { NODE_EXTRA_CA_CERTS: _, ...base } = process.env;
  const made = spawnSync(process.execPath, [path.join(root, 'scripts', 'release.mjs'), '--out', out], {
    cwd: root,
    encoding: 'utf8',
    env: base,
  });
  expect(made.status, made.stderr).toBe(0);
  const tgz = fs.readdirSync(out).find((f) => f.endsWith('.tgz'))!;
  // --offline: the tarball must hold everything; nothing comes from a registry.
  const installed = spawnSync(
    'npm',
    ['install', '-g', '--prefix', prefix, '--offline', '--no-audit', '--no-fund', path.join(out, tgz)],
    { encoding: 'utf8', env: base },
  );
  expect(installed.status, installed.stderr).toBe(0);
  env = {
    ...base,
    PATH: `${path.join(prefix, 'bin')}:${process.env.PATH}`,
    KILN_RUNTIME_DIR: path.join(dir, 'rt'),
    KILN_CACHE_DIR: path.join(dir, 'cache'),
    XDG_CONFIG_HOME: path.join(dir, 'config'),
    HOME: dir,
  };
}, 180_000);

afterAll(() => {
  if (!dir) return;
  spawnSync(path.join(prefix, 'bin', 'kiln'), ['--stop-server'], { env });
  removeTree(dir);
});

describe.runIf(available)('installed from the release tarball', () => {
  it('puts kiln (the native client) and kiln-dist on PATH in the prefix', () => {
    const kiln = fs.realpathSync(path.join(prefix, 'bin', 'kiln'));
    expect(kiln.startsWith(fs.realpathSync(prefix))).toBe(true);
    expect(fs.readFileSync(kiln).subarray(0, 4).toString('latin1')).toBe('\x7fELF');
    const help = spawnSync('kiln-dist', ['--help'], { env, encoding: 'utf8' });
    expect(help.status).toBe(0);
    expect(help.stdout).toContain('kiln-dist');
  });

  it('compiles through the installed kiln: a miss, then an exact hit with the same object', () => {
    const work = path.join(dir, 'work');
    fs.mkdirSync(work, { recursive: true });
    fs.writeFileSync(path.join(work, 'a.c'), 'int answer(void) { return 42; }\n');
    const plain = spawnSync('cc', ['-O2', '-c', 'a.c', '-o', 'plain.o'], { cwd: work });
    expect(plain.status).toBe(0);
    for (let i = 0; i < 2; i++) {
      const r = spawnSync('kiln', ['cc', '-O2', '-c', 'a.c', '-o', 'a.o'], {
        cwd: work,
        env,
        encoding: 'utf8',
      });
      expect(r.status, r.stderr).toBe(0);
      expect(
        fs.readFileSync(path.join(work, 'a.o')).equals(fs.readFileSync(path.join(work, 'plain.o'))),
      ).toBe(true);
    }
    const stats = JSON.parse(
      spawnSync('kiln', ['--show-stats', '--stats-format', 'json'], { env, encoding: 'utf8' }).stdout,
    ).stats;
    expect([stats.misses, stats.hitsDirect + stats.hitsPreprocessed]).toEqual([1, 1]);
    // The daemon runs from the prefix, not from this clone.
    const pid = fs.readFileSync(path.join(dir, 'rt', 'daemon.pid'), 'utf8').trim();
    const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    expect(cmdline).toContain(path.join(prefix, 'lib', 'node_modules', 'kiln'));
    expect(cmdline).not.toContain(root);
  });

  it('the systemd units verify with systemd-analyze, pointed at the installed kiln-dist', () => {
    if (!have('systemd-analyze')) return;
    for (const unit of ['kiln-scheduler.service', 'kiln-worker.service']) {
      const text = fs
        .readFileSync(path.join(root, 'packaging', 'systemd', unit), 'utf8')
        .replace('/usr/local/bin/kiln-dist', path.join(prefix, 'bin', 'kiln-dist'));
      expect(text).toContain(`ExecStart=${path.join(prefix, 'bin', 'kiln-dist')} `);
      const file = path.join(dir, unit);
      fs.writeFileSync(file, text);
      const r = spawnSync('systemd-analyze', ['verify', file], { encoding: 'utf8' });
      expect(`${r.stdout}${r.stderr}`.trim()).toBe('');
      expect(r.status).toBe(0);
    }
  });

  it('resolves the bundled plugins from the installed core, as the worker loads them by name', () => {
    const core = path.join(prefix, 'lib', 'node_modules', 'kiln', 'node_modules', '@kiln', 'core');
    const req = createRequire(path.join(core, 'package.json'));
    for (const name of [
      '@kiln/sandbox-bwrap',
      '@kiln/sandbox-docker',
      '@kiln/resolver-icecc',
      '@kiln/plugins',
    ]) {
      const resolved = req.resolve(name);
      expect(resolved.startsWith(path.join(prefix, 'lib', 'node_modules', 'kiln'))).toBe(true);
    }
  });
});
