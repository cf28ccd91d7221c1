/**
 * The icecc resolver end to end: the daemon packs gcc and clang with the real icecc-create-env
 * (once per compiler), a bubblewrap worker with the icecc resolver unpacks the tarballs and
 * compiles zlib; every object matches a plain local compile byte for byte. A corrupt tarball and
 * one whose compiler is for another architecture, named in icecc_version: every compile local,
 * counted, the build unbroken.
 */
import fs from 'node:fs';
import path from 'node:path';
import { writeTarGz } from '@kiln/plugins/conformance';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { have } from './helpers/prereq.js';
import { differing, ResolverCluster, sum } from './helpers/resolver-cluster.js';
import { debianSource } from './helpers/sources.js';

const ready = have('bwrap') && have('make') && have('gcc') && have('clang') && have('icecc-create-env');

describe.skipIf(!ready)('icecc toolchains through a worker', () => {
  const c = new ResolverCluster();
  let dir = '';
  const tarballs = () => path.join(c.sb.cacheDir, 'plugins', 'icecc');

  beforeAll(async () => {
    await c.start('resolvers = ["icecc"]');
    dir = path.join(c.sb.work, 'zlib');
    fs.cpSync(debianSource('zlib'), dir, { recursive: true });
    const conf = c.sb.run(['./configure', '--static'], { cwd: dir, env: { ...c.sb.env, CC: 'gcc' } });
    expect(conf.status, conf.stderr).toBe(0);
  }, 180_000);
  afterAll(() => c.stop());

  // kiln keeps clang -g local (clang records each source file's MD5 in its debug info).
  it.each([
    ['gcc', '-O2 -g'],
    ['clang', '-O2'],
  ])(
    'builds zlib with %s packed by icecc-create-env once: objects identical to a local build',
    { timeout: 300_000 },
    (cc, cflags) => {
      const local = c.buildZlib(dir, cc, cflags);
      c.useClientConfig('force_remote_build = true\nresolvers = ["icecc"]');
      c.sb.kiln(['--zero-stats']);
      const remote = c.buildZlib(dir, `${c.sb.client} ${cc}`, cflags);
      expect(local.size).toBeGreaterThan(10);
      expect(differing(local, remote)).toEqual([]);
      const s = c.stats();
      expect(s.distErrors).toEqual({});
      expect(s.distLocal).toEqual({});
      expect(sum(s.distCompiles)).toBe(local.size);
      // One tarball for all the build's compiles, made by icecc-create-env (its layout: usr/bin/<driver>).
      const made = fs.readdirSync(tarballs()).filter((f) => f.endsWith('.tar.gz'));
      expect(made).toHaveLength(1);
      expect(c.sb.log()).not.toMatch(/cannot package/);
    },
  );

  it('a corrupt tarball and one for another architecture in icecc_version: compiled locally, counted', {
    timeout: 300_000,
  }, async () => {
    const local = c.buildZlib(dir, 'gcc');
    // A real icecc tarball cut in half.
    c.useClientConfig('resolvers = ["icecc"]');
    const whole = path.join(c.sb.dir, 'whole.tar.gz');
    const made = c.sb.run(['icecc-create-env', '/usr/bin/gcc'], { cwd: c.sb.dir });
    expect(made.status, made.stderr).toBe(0);
    const name = fs.readdirSync(c.sb.dir).find((f) => /^[0-9a-f]{32}\.tar\.gz$/.test(f))!;
    fs.renameSync(path.join(c.sb.dir, name), whole);
    const corrupt = path.join(c.sb.dir, 'corrupt.tar.gz');
    const bytes = fs.readFileSync(whole);
    fs.writeFileSync(corrupt, bytes.subarray(0, bytes.length >> 1));
    // An "environment" whose gcc is an aarch64 program, listed as native (x86_64 here).
    const foreign = path.join(c.sb.dir, 'foreign.tar.gz');
    const arm = path.join(c.sb.dir, 'arm-true');
    const cross = c.sb.run(['aarch64-linux-gnu-gcc', '-static', '-o', arm, '-x', 'c', '-'], {
      input: 'int main(void) { return 0; }\n',
    });
    expect(cross.status, cross.stderr).toBe(0);
    await writeTarGz(
      [
        { type: 'dir', path: 'usr/bin/' },
        { type: 'file', path: 'usr/bin/gcc', data: fs.readFileSync(arm), mode: 0o755 },
      ],
      foreign,
    );
    for (const [tarball, why] of [
      [corrupt, /tarball .*corrupt\.tar\.gz is corrupt/],
      [foreign, /runs on aarch64 machines, but the tarball is listed for platform x86_64/],
    ] as const) {
      c.useClientConfig(
        `force_remote_build = true\nresolvers = ["icecc"]\n[dist.resolver_config.icecc]\nicecc_version = "${tarball}"`,
      );
      c.sb.kiln(['--zero-stats']);
      const remote = c.buildZlib(dir, `${c.sb.client} gcc`);
      expect(differing(local, remote)).toEqual([]);
      const s = c.stats();
      expect(sum(s.distCompiles)).toBe(0);
      expect(s.distLocal).toEqual({ 'toolchain cannot be packaged': local.size });
      expect(c.sb.log()).toMatch(why);
    }
  });
});
