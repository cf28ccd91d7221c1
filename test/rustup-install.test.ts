/**
 * The rustup resolver's install path for real: a worker whose rustup home holds no toolchain, with
 * `install = true` and `dist_server` set to a rustup distribution tree served on 127.0.0.1, built
 * from this machine's installed toolchain (test/helpers/rustup-dist.ts): the real `rustup
 * toolchain install` downloads and installs it, the resolver checks its commit and makes a root
 * whose rustc runs. A server whose toolchain is another commit is refused after the install.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { hostTriple, type PackagedToolchain } from '@kiln/plugins';
import { RustupResolver } from '@kiln/resolver-rustup';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tmpDir } from './helpers/kiln.js';
import { have } from './helpers/prereq.js';
import { type RustupDist, serveRustupDist } from './helpers/rustup-dist.js';

const haveRustup = have('rustup');
const RUSTUP = spawnSync('sh', ['-c', 'command -v rustup'], { encoding: 'utf8' }).stdout.trim();
const RUSTC = haveRustup ? spawnSync(RUSTUP, ['which', 'rustc'], { encoding: 'utf8' }).stdout.trim() : '';
const HOST = hostTriple();

describe.skipIf(!haveRustup)('rustup toolchain install from a local distribution server', () => {
  let dir: string;
  let dist: RustupDist;
  let own: PackagedToolchain;

  beforeAll(async () => {
    dir = tmpDir('kiln-rustup-dist-');
    dist = await serveRustupDist(path.dirname(path.dirname(RUSTC)), path.join(dir, 'server'));
    own = (await new RustupResolver({
      config: { rustup: RUSTUP, install: false, install_timeout: 600, hosts: [HOST] },
      hostTriple: HOST,
    }).package(RUSTC))!;
  }, 600_000);
  afterAll(async () => {
    await dist?.close();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('installs the missing toolchain with the real rustup, then resolves it', {
    timeout: 600_000,
  }, async () => {
    const home = path.join(dir, 'rustup-home');
    fs.mkdirSync(home);
    const commands: string[][] = [];
    const r = new RustupResolver({
      config: {
        rustup: RUSTUP,
        rustup_home: home,
        install: true,
        install_timeout: 600,
        dist_server: dist.url,
        hosts: [HOST],
      },
      hostTriple: HOST,
      onCommand: (c) => commands.push([...c]),
    });
    const dest = path.join(dir, 'root');
    const { root } = await r.resolveVersion(own.spec, dest);
    const name = `${dist.release}-${HOST}`;
    expect(commands.filter((c) => c[1] === 'toolchain' && c[2] === 'install')).toEqual([
      [RUSTUP, 'toolchain', 'install', name, '--profile', 'minimal', '--no-self-update'],
    ]);
    expect(dist.served).toContain(`/dist/channel-rust-${dist.release}.toml`);
    expect(fs.existsSync(path.join(home, 'toolchains', name, 'bin', 'rustc'))).toBe(true);
    const vv = spawnSync(path.join(root, 'rust', 'bin', 'rustc'), ['-vV'], { encoding: 'utf8' });
    expect(vv.stdout).toContain(`commit-hash: ${own.spec.version!.commit}`);
  });

  it('refuses what the server installed when it is another commit (never approximated)', {
    timeout: 600_000,
  }, async () => {
    // The nightly toolchain served as this release's channel: rustup installs it without complaint.
    const nightly = spawnSync(RUSTUP, ['which', 'rustc', '--toolchain', `nightly-${HOST}`], {
      encoding: 'utf8',
    });
    if (nightly.status !== 0) {
      if (process.env.CI === 'true') throw new Error(`a nightly-${HOST} toolchain is required under CI=true`);
      return;
    }
    const other = await serveRustupDist(
      path.dirname(path.dirname(nightly.stdout.trim())),
      path.join(dir, 'other-server'),
      dist.release,
    );
    try {
      const home = path.join(dir, 'rustup-home-2');
      fs.mkdirSync(home);
      const r = new RustupResolver({
        config: {
          rustup: RUSTUP,
          rustup_home: home,
          install: true,
          install_timeout: 600,
          dist_server: other.url,
          hosts: [HOST],
        },
        hostTriple: HOST,
      });
      const dest = path.join(dir, 'root-2');
      const err = await r.resolveVersion(own.spec, dest).catch((e) => e);
      expect(err.code).toBe('KILN_ERR_RESOLVER_TOOLCHAIN');
      const name = `${dist.release}-${HOST}`;
      expect(err.message).toMatch(
        new RegExp(`${name} has commit [0-9a-f]{40}, not ${own.spec.version!.commit}`),
      );
      expect(fs.existsSync(dest)).toBe(false);
      // rustup did install it: the refusal is kiln's.
      expect(fs.existsSync(path.join(home, 'toolchains', name, 'bin', 'rustc'))).toBe(true);
    } finally {
      await other.close();
    }
  });
});
