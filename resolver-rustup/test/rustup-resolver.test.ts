/**
 * The rustup resolver beyond the conformance kit: which toolchain it picks, what it refuses, and the
 * rustup command lines of the install path.
 *
 * Here the install path's branches (a nightly's dated names, a target to add, an install that
 * brings another commit) are driven with a recording exec: the `rustup toolchain install` and
 * `rustup target add` calls are recorded and asserted exactly, and after the "install" the real
 * installed toolchain stands in for the new one. Everything else (the toolchain list, `rustup
 * which`, `rustc -vV`, ldd, the root) is the real thing. A hung rustup is a real script that sleeps.
 * The real `rustup toolchain install`, from a distribution tree served on 127.0.0.1, is tested in
 * test/rustup-install.test.ts.
 */
import { execFile, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { hostTriple, type PackagedToolchain, versionDigest } from '@kiln/plugins';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RustupConfig } from '../src/config.js';
import { installCandidates, parseRustcVersion, RustupResolver } from '../src/rustup-resolver.js';

const found = (tool: string) =>
  spawnSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' }).stdout.trim();
const rustup = found('rustup');
const rustc = rustup ? spawnSync(rustup, ['which', 'rustc'], { encoding: 'utf8' }).stdout.trim() : '';
if (!rustc && process.env.CI === 'true')
  throw new Error('rustup and a toolchain are required under CI=true (see .ci/run)');
const HOST = hostTriple();

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-rustup-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
let n = 0;
const dest = () => path.join(tmp, `case-${++n}`, 'root');

const config = (over: Partial<RustupConfig> = {}): RustupConfig => ({
  rustup,
  install: false,
  install_timeout: 60,
  hosts: [HOST],
  ...over,
});

const realExec = (file: string, args: readonly string[], timeoutMs: number) =>
  new Promise<string>((resolve, reject) =>
    execFile(file, [...args], { timeout: timeoutMs }, (err, stdout, stderr) =>
      err ? reject(new Error(stderr || err.message)) : resolve(stdout),
    ),
  );

/** With its spec's commit replaced (and the digest made to fit), another toolchain. */
function withCommit(p: PackagedToolchain, commit: string, extra: Record<string, string> = {}) {
  const version = { ...p.spec.version!, commit, ...extra };
  return { ...p.spec, version, digest: versionDigest('rustup', version), targetTriple: version.target };
}

describe('rustc -vV and toolchain names', () => {
  it('parses rustc -vV and names install candidates by release or date', () => {
    const v = parseRustcVersion(
      'rustc 1.97.0-nightly (e50aa6fba 2026-05-19)\nbinary: rustc\ncommit-hash: e50aa6fba4e63ab34c72bf9acfd2c307c1155d1a\ncommit-date: 2026-05-19\nhost: aarch64-unknown-linux-gnu\nrelease: 1.97.0-nightly\n',
    );
    expect(v).toEqual({
      release: '1.97.0-nightly',
      commit: 'e50aa6fba4e63ab34c72bf9acfd2c307c1155d1a',
      commitDate: '2026-05-19',
      host: 'aarch64-unknown-linux-gnu',
    });
    expect(installCandidates(v!)).toEqual(['nightly-2026-05-20', 'nightly-2026-05-19']);
    expect(installCandidates({ ...v!, release: '1.95.0' })).toEqual(['1.95.0']);
    expect(installCandidates({ ...v!, release: '1.96.0-beta.3', commitDate: '2026-12-31' })).toEqual([
      'beta-2027-01-01',
      'beta-2026-12-31',
    ]);
    expect(parseRustcVersion('gcc (Debian 12.2.0-14) 12.2.0\n')).toBeUndefined();
  });
});

describe.skipIf(!rustc)('rustup resolver against the installed rustup', () => {
  let own: PackagedToolchain;
  const real = parseRustcVersion(spawnSync(rustc, ['-vV'], { encoding: 'utf8' }).stdout)!;

  beforeAll(async () => {
    own = (await new RustupResolver({ config: config(), hostTriple: HOST }).package(rustc))!;
  });

  it('names the toolchain by release, commit and target; not a rustc outside rustup or the proxy', async () => {
    expect(own.spec.version).toEqual({
      release: real.release,
      commit: real.commit,
      commit_date: real.commitDate,
      target: real.host,
    });
    expect(own.spec.compiler).toBe('/rust/bin/rustc');
    const r = new RustupResolver({ config: config(), hostTriple: HOST });
    // A copy of rustc outside a toolchain directory is not named: it may be a patched build.
    const copy = path.join(tmp, 'rustc');
    fs.copyFileSync(rustc, copy);
    await expect(r.package(copy)).resolves.toBeUndefined();
    await expect(r.package('/bin/sh')).resolves.toBeUndefined();
  });

  it('picks the installed toolchain with that commit among several, and the root runs it', async () => {
    const commands: string[][] = [];
    const r = new RustupResolver({
      config: config(),
      hostTriple: HOST,
      onCommand: (c) => commands.push([...c]),
    });
    const d = dest();
    const { root } = await r.resolveVersion(own.spec, d);
    expect(root).toBe(d);
    // rustc runs from the root with only its own files and the system libraries the root holds.
    const vv = spawnSync(path.join(root, 'rust/bin/rustc'), ['-vV'], { encoding: 'utf8' });
    expect(vv.stdout).toContain(`commit-hash: ${real.commit}`);
    expect(fs.existsSync(path.join(root, 'usr/bin/env'))).toBe(true);
    expect(commands[0]).toEqual([rustup, 'toolchain', 'list']);
    expect(commands.some((c) => c.includes('install') || c.includes('add'))).toBe(false);
  });

  it('refuses a missing commit without install, saying what to run, and leaves nothing', async () => {
    const r = new RustupResolver({ config: config(), hostTriple: HOST });
    const d = dest();
    const err = await r.resolveVersion(withCommit(own, 'f'.repeat(40)), d).catch((e) => e);
    expect(err.code).toBe('KILN_ERR_RESOLVER_TOOLCHAIN');
    expect(err.message).toContain(
      `run rustup toolchain install ${real.release} on this worker, or set install = true`,
    );
    expect(err.message).toContain(real.commit.slice(0, 9));
    expect(fs.existsSync(path.dirname(d))).toBe(false);
  });

  it('refuses a spec whose digest is not its version', async () => {
    const r = new RustupResolver({ config: config(), hostTriple: HOST });
    const err = await r.resolveVersion({ ...own.spec, digest: 'a'.repeat(64) }, dest()).catch((e) => e);
    expect(err.code).toBe('KILN_ERR_RESOLVER_TOOLCHAIN');
    expect(err.message).toContain('not the digest of the version');
  });

  it('a missing target without install: refused with the rustup target add line', async () => {
    const r = new RustupResolver({ config: config(), hostTriple: HOST });
    const spec = withCommit(own, real.commit, { target: 'riscv64gc-unknown-linux-gnu' });
    const err = await r.resolveVersion(spec, dest()).catch((e) => e);
    expect(err.code).toBe('KILN_ERR_RESOLVER_TOOLCHAIN');
    expect(err.message).toMatch(/run rustup target add --toolchain \S+ riscv64gc-unknown-linux-gnu/);
  });

  /** A recording exec: rustup's install and target add "succeed" without downloading. */
  function recording(installedAs: string, commitAfterInstall: string) {
    const commands: string[][] = [];
    let installed = false;
    const exec = async (file: string, args: readonly string[], timeoutMs: number) => {
      if (file === rustup && args[0] === 'toolchain' && args[1] === 'install') {
        installed = true;
        return '';
      }
      if (file === rustup && args[0] === 'target' && args[1] === 'add') return '';
      if (file === rustup && args[0] === 'toolchain' && args[1] === 'list') {
        const list = await realExec(file, args, timeoutMs);
        return installed ? `${list}${installedAs}\n` : list;
      }
      if (file === rustup && args[0] === 'which' && args[3] === installedAs) return `${rustc}\n`;
      if (file === rustc && args[0] === '-vV') {
        const text = await realExec(file, args, timeoutMs);
        return installed ? text.replace(real.commit, commitAfterInstall) : text;
      }
      return realExec(file, args, timeoutMs);
    };
    return { commands, exec };
  }

  it('installs a missing toolchain with the exact rustup command lines (recorded, see above)', async () => {
    const wanted = 'e'.repeat(40);
    const name = `${real.release}-${HOST}`;
    const { commands, exec } = recording(name, wanted);
    const r = new RustupResolver({
      config: config({ install: true }),
      hostTriple: HOST,
      exec,
      onCommand: (c) => commands.push([...c]),
    });
    const { root } = await r.resolveVersion(withCommit(own, wanted), dest());
    expect(fs.statSync(path.join(root, 'rust/bin/rustc')).isFile()).toBe(true);
    expect(commands.filter((c) => c[1] === 'toolchain' && c[2] === 'install')).toEqual([
      [rustup, 'toolchain', 'install', name, '--profile', 'minimal', '--no-self-update'],
    ]);
  });

  it('installs a missing target with rustup target add (recorded)', async () => {
    const { commands, exec } = recording('unused', real.commit);
    const r = new RustupResolver({
      config: config({ install: true }),
      hostTriple: HOST,
      exec,
      onCommand: (c) => commands.push([...c]),
    });
    const spec = withCommit(own, real.commit, { target: 'riscv64gc-unknown-linux-gnu' });
    await r.resolveVersion(spec, dest());
    const stable = commands.find((c) => c[1] === 'target')!;
    expect(stable).toEqual([
      rustup,
      'target',
      'add',
      '--toolchain',
      stable[4],
      'riscv64gc-unknown-linux-gnu',
    ]);
    expect(stable[4]).toMatch(new RegExp(`-${HOST}$`));
  });

  it('refuses an installed toolchain whose commit is not the one asked for: never approximated', async () => {
    const wanted = 'd'.repeat(40);
    const name = `${real.release}-${HOST}`;
    // The install "succeeds" but brings another commit (a re-released channel, say).
    const { exec } = recording(name, 'c'.repeat(40));
    const r = new RustupResolver({ config: config({ install: true }), hostTriple: HOST, exec });
    const d = dest();
    const err = await r.resolveVersion(withCommit(own, wanted), d).catch((e) => e);
    expect(err.code).toBe('KILN_ERR_RESOLVER_TOOLCHAIN');
    expect(err.message).toContain(`${name} has commit ${'c'.repeat(40)}, not ${wanted}`);
    expect(fs.existsSync(path.dirname(d))).toBe(false);
  });

  it('a hung rustup install ends at install_timeout with an error', async () => {
    const fake = path.join(tmp, 'rustup');
    fs.writeFileSync(
      fake,
      `#!/bin/sh\ncase "$1 $2" in\n  "toolchain list") echo "stable-${HOST}";;\n  "toolchain install") sleep 30;;\nesac\n`,
      { mode: 0o755 },
    );
    const r = new RustupResolver({
      config: config({ rustup: fake, install: true, install_timeout: 1 }),
      hostTriple: HOST,
    });
    const started = Date.now();
    const err = await r.resolveVersion(withCommit(own, 'b'.repeat(40)), dest()).catch((e) => e);
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(err.code).toBe('KILN_ERR_RESOLVER_TOOLCHAIN');
    expect(err.message).toContain('installing it failed');
  });
});
