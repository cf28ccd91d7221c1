/**
 * The icecc resolver without a cluster: ICECC_VERSION parsing and choice per target, one
 * icecc-create-env run per compiler (shared by gcc and g++, and by a restarted daemon), and each bad
 * tarball a clear error at start, a rejected package (the daemon compiles locally) or, on a worker,
 * a refused upload.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { hostTriple, sha256File } from '@kiln/plugins';
import { writeTarGz } from '@kiln/plugins/conformance';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { IceccConfig } from '../src/config.js';
import { IceccResolver } from '../src/icecc-resolver.js';
import { environmentFor, parseIceccVersion } from '../src/icecc-version.js';

const found = (tool: string) =>
  spawnSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' }).stdout.trim();
const createEnv = found('icecc-create-env');
const cross = found('aarch64-linux-gnu-gcc');
const ready = Boolean(createEnv && cross && found('gcc') && found('g++'));
if (!ready && process.env.CI === 'true')
  throw new Error(
    'icecc-create-env, gcc, g++ and aarch64-linux-gnu-gcc are required under CI=true (see .ci/run)',
  );

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-icecc-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
const native = hostTriple();
const arch = native.split('-')[0]!;

const make = (config: Partial<IceccConfig>, workDir = tmp) =>
  new IceccResolver({
    config: { create_env: createEnv, create_timeout: 300, ...config },
    workDir,
    hostTriple: native,
  });
const outcome = (p: Promise<unknown>) =>
  p.then(
    () => 'resolved',
    (e: { code?: string; message: string }) => `${e.code}: ${e.message}`,
  );

describe('ICECC_VERSION', () => {
  it('parses native, per-platform and per-target tarballs', () => {
    expect(
      parseIceccVersion('/a/native.tgz,aarch64:/a/arm.tgz,x86_64:/a/cross.tgz=aarch64-linux-gnu', 'x86_64'),
    ).toEqual([
      { arch: 'x86_64', platform: 'x86_64', tarball: '/a/native.tgz' },
      { arch: 'aarch64', platform: 'aarch64', tarball: '/a/arm.tgz' },
      { arch: 'x86_64', platform: 'x86_64', tarball: '/a/cross.tgz', target: 'aarch64-linux-gnu' },
    ]);
    expect(() => parseIceccVersion('sparc:/a.tgz', 'x86_64')).toThrow(/unknown platform sparc/);
    expect(() => parseIceccVersion('relative.tgz', 'x86_64')).toThrow(/absolute/);
    expect(() => parseIceccVersion('/a.tgz,,/b.tgz', 'x86_64')).toThrow(/empty item/);
  });

  it('gives a cross compiler its =target tarball and never the native one', () => {
    const envs = parseIceccVersion('/n.tgz,x86_64:/c.tgz=aarch64-linux-gnu', 'x86_64');
    expect(environmentFor(envs, 'x86_64-linux-gnu', 'gcc', 'x86_64')?.tarball).toBe('/n.tgz');
    expect(environmentFor(envs, 'aarch64-linux-gnu', 'aarch64-linux-gnu-gcc', 'x86_64')?.tarball).toBe(
      '/c.tgz',
    );
    expect(
      environmentFor(parseIceccVersion('/n.tgz', 'x86_64'), 'aarch64-linux-gnu', 'x', 'x86_64'),
    ).toBeUndefined();
  });

  it('stops at start for a missing, an xz-compressed or a mis-spelt tarball', () => {
    const xz = path.join(tmp, 'env.tar.xz');
    fs.writeFileSync(xz, Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0, 0, 0]));
    expect(() => make({ icecc_version: path.join(tmp, 'missing.tgz') })).toThrow(
      /KILN|cannot be read \(ENOENT\)/,
    );
    expect(() => make({ icecc_version: xz })).toThrow(
      /not gzip'd; make it with icecc-create-env --compression gzip/,
    );
    expect(() => make({ icecc_version: 'mips:/x.tgz' })).toThrow(/unknown platform mips/);
  });
});

describe.skipIf(!ready)('icecc-create-env, once per compiler', () => {
  let counting = '';
  let runs = '';
  beforeAll(() => {
    runs = path.join(tmp, 'runs.log');
    counting = path.join(tmp, 'counting-create-env');
    fs.writeFileSync(counting, `#!/bin/sh\necho "$@" >> ${runs}\nexec ${createEnv} "$@"\n`, { mode: 0o755 });
  });

  it('packs gcc once for concurrent calls, g++ and a restarted daemon; the host triple comes from the ELF header', async () => {
    const workDir = path.join(tmp, 'once');
    const r = make({ create_env: counting }, workDir);
    const [a, b] = await Promise.all([r.package('/usr/bin/gcc'), r.package('/usr/bin/gcc')]);
    const cxx = await r.package('/usr/bin/g++');
    expect(a).toEqual(b);
    expect(a?.spec).toMatchObject({ kind: 'icecc', compiler: '/usr/bin/gcc', hostTriples: [native] });
    expect(cxx?.spec.compiler).toBe('/usr/bin/g++');
    expect(cxx?.spec.digest).toBe(a?.spec.digest);
    expect(await sha256File(a!.archive)).toBe(a!.spec.digest);
    // Another daemon on the same cache: found at once, not packed again.
    const again = make({ create_env: counting }, workDir);
    expect(await again.find('/usr/bin/gcc')).toEqual(a);
    expect(await again.package('/usr/bin/gcc')).toEqual(a);
    expect(fs.readFileSync(runs, 'utf8').trim().split('\n')).toHaveLength(1);
  });

  it('a missing icecc-create-env, or a compiler it cannot pack, rejects with a message', async () => {
    const r = make({ create_env: path.join(tmp, 'no-such-create-env') }, path.join(tmp, 'none'));
    expect(await outcome(r.package('/usr/bin/gcc'))).toMatch(
      /^KILN_ERR_RESOLVER_TOOLCHAIN: .*is not installed \(apt-get install icecc/,
    );
    // A gcc copied away from its helpers: icecc-create-env fails, and the message says why.
    const lonely = path.join(tmp, 'lonely', 'gcc');
    fs.mkdirSync(path.dirname(lonely));
    fs.copyFileSync(fs.realpathSync('/usr/bin/gcc'), lonely);
    fs.chmodSync(lonely, 0o755);
    const c = make({}, path.join(tmp, 'lonely-work'));
    expect(await outcome(c.package(lonely))).toMatch(/^KILN_ERR_RESOLVER_TOOLCHAIN: .*failed: ./);
  });
});

describe.skipIf(!ready)('tarballs for the wrong machine', () => {
  let foreign = '';
  beforeAll(async () => {
    const arm = path.join(tmp, 'arm-true');
    execFileSync(cross, ['-static', '-o', arm, '-x', 'c', '-'], { input: 'int main(void) { return 0; }\n' });
    foreign = path.join(tmp, 'foreign.tar.gz');
    await writeTarGz(
      [
        { type: 'dir', path: 'usr/bin/' },
        { type: 'file', path: 'usr/bin/gcc', data: fs.readFileSync(arm), mode: 0o755 },
      ],
      foreign,
    );
  });

  it('the client refuses a tarball whose compiler runs elsewhere than its platform says', async () => {
    const r = make({ icecc_version: foreign });
    expect(await outcome(r.package('/usr/bin/gcc'))).toMatch(
      new RegExp(`runs on aarch64 machines, but the tarball is listed for platform ${arch}`),
    );
    // Listed for the machines it does run on, its triple is read from the ELF header.
    const ok = make({ icecc_version: `aarch64:${foreign}` });
    const otherwise = await ok.package('/usr/bin/gcc');
    if (arch === 'aarch64') expect(otherwise?.spec.hostTriples).toEqual(['aarch64-unknown-linux-gnu']);
    else expect(otherwise).toBeDefined();
  });

  it('a worker refuses it too, whatever the client claimed, and leaves nothing behind', async () => {
    if (arch === 'aarch64') return;
    const r = make({});
    const spec = {
      kind: 'icecc',
      digest: await sha256File(foreign),
      hostTriples: [native],
      compiler: '/usr/bin/gcc',
    };
    const parent = fs.mkdtempSync(path.join(tmp, 'worker-'));
    expect(await outcome(r.materialise(spec, foreign, path.join(parent, 'root')))).toMatch(
      /^KILN_ERR_TOOLCHAIN_UNSAFE: .*usr\/bin\/gcc runs on aarch64-unknown-linux-gnu, this worker is x86_64/,
    );
    expect(fs.readdirSync(parent)).toEqual([]);
  });

  it('a corrupt tarball is refused when packaging', async () => {
    const corrupt = path.join(tmp, 'corrupt.tar.gz');
    const bytes = fs.readFileSync(foreign);
    fs.writeFileSync(corrupt, bytes.subarray(0, bytes.length >> 1));
    expect(await outcome(make({ icecc_version: corrupt }).package('/usr/bin/gcc'))).toMatch(
      /^KILN_ERR_RESOLVER_TOOLCHAIN: .*corrupt\.tar\.gz is corrupt/,
    );
  });
});
