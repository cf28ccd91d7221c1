/**
 * Packaging real compilers: the archive is deterministic, survives safeExtract, and the compiler in
 * it runs in a bubblewrap jail whose root is only that archive, producing the same objects as the
 * host. Also the client-side ToolchainCache and the `kiln --package-toolchain` command.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ArchiveResolver } from '../core/src/toolchain/archive-resolver.js';
import { packageToolchain } from '../core/src/toolchain/package.js';
import { ToolchainCache } from '../core/src/toolchain/toolchain-cache.js';
import { safeExtract } from '../plugins/src/safe-extract.js';
import { NODE_CLIENT } from './helpers/kiln.js';
import { have } from './helpers/prereq.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-toolchain-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const C_SOURCE = '#include <stdio.h>\nint main(void) { printf("%d\\n", 6 * 7); return 0; }\n';
const CXX_SOURCE = `#include <vector>
#include <numeric>
struct Shape { virtual ~Shape() = default; virtual int area() const = 0; };
struct Square : Shape { int s; explicit Square(int s) : s(s) {} int area() const override { return s * s; } };
int total(const std::vector<int> &v) { return std::accumulate(v.begin(), v.end(), Square(3).area()); }
`;

/** Runs `argv` in a jail made of `root` alone (plus /proc, /dev, a tmpfs and the work dir). */
function jailed(root: string, work: string, argv: string[]) {
  const args = ['--unshare-all', '--die-with-parent', '--clearenv', '--setenv', 'PATH', '/usr/bin:/bin'];
  for (const name of fs.readdirSync(root).sort()) {
    const st = fs.lstatSync(path.join(root, name));
    if (st.isSymbolicLink()) args.push('--symlink', fs.readlinkSync(path.join(root, name)), `/${name}`);
    else if (st.isDirectory()) args.push('--ro-bind', path.join(root, name), `/${name}`);
  }
  args.push('--proc', '/proc', '--dev', '/dev', '--tmpfs', '/tmp', '--bind', work, work, '--chdir', work);
  return spawnSync('/usr/bin/bwrap', [...args, ...argv], { encoding: 'utf8' });
}

function host(argv: string[], cwd: string) {
  const r = spawnSync(argv[0]!, argv.slice(1), { cwd, encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
  return r;
}

const families = [
  { cc: 'gcc', cxx: 'g++', target: /^x86_64-linux-gnu$/ },
  { cc: 'clang', cxx: 'clang++', target: /^x86_64-.*linux-gnu$/ },
].filter((f) => have(f.cc));

describe.each(families)('$cc', ({ cc, cxx, target }) => {
  it('packs deterministically, extracts safely and compiles in a jail holding only the archive', async () => {
    expect(have('bwrap')).toBe(true);
    const dir = fs.mkdtempSync(path.join(tmp, `${cc}-`));
    const started = Date.now();
    const spec = await packageToolchain(cc, path.join(dir, 'a.tar.gz'));
    const ms = Date.now() - started;
    const size = fs.statSync(path.join(dir, 'a.tar.gz')).size;
    console.log(`packaging ${cc}: ${ms} ms, ${(size / 1024 ** 2).toFixed(1)} MiB, digest ${spec.digest}`);
    expect(spec).toMatchObject({
      kind: 'archive',
      hostTriples: ['x86_64-unknown-linux-gnu'],
      compiler: `/usr/bin/${cc}`,
    });
    expect(spec.targetTriple).toMatch(target);
    expect(spec.digest).toMatch(/^[0-9a-f]{64}$/);

    const again = await packageToolchain(`/usr/bin/${cc}`, path.join(dir, 'b.tar.gz'));
    expect(again.digest).toBe(spec.digest);
    expect(
      fs.readFileSync(path.join(dir, 'b.tar.gz')).equals(fs.readFileSync(path.join(dir, 'a.tar.gz'))),
    ).toBe(true);

    const root = path.join(dir, 'root');
    await safeExtract(path.join(dir, 'a.tar.gz'), root);
    // Merged /usr is kept as links, so /lib64/ld-linux-x86-64.so.2 resolves inside the root.
    expect(fs.readlinkSync(path.join(root, 'lib64'))).toBe('usr/lib64');
    expect(fs.existsSync(path.join(root, 'lib64/ld-linux-x86-64.so.2'))).toBe(true);
    expect(fs.existsSync(path.join(root, `usr/bin/${cxx}`))).toBe(true);

    // Workers get preprocessed sources, as with icecream: headers stay on the client.
    const work = fs.mkdtempSync(path.join(dir, 'work-'));
    fs.writeFileSync(path.join(work, 'main.c'), C_SOURCE);
    fs.writeFileSync(path.join(work, 'shapes.cpp'), CXX_SOURCE);
    host([cc, '-E', 'main.c', '-o', 'main.i'], work);
    host([cxx, '-E', 'shapes.cpp', '-o', 'shapes.ii'], work);
    for (const [driver, input] of [
      [cc, 'main.i'],
      [cxx, 'shapes.ii'],
    ] as const) {
      const args = ['-O2', '-g', '-c', input];
      host([driver, ...args, '-o', `${input}.host.o`], work);
      const r = jailed(root, work, [`/usr/bin/${driver}`, ...args, '-o', `${input}.jail.o`]);
      expect(r.status, `${driver} in the jail: ${r.stderr}`).toBe(0);
      const jail = fs.readFileSync(path.join(work, `${input}.jail.o`));
      expect(jail.equals(fs.readFileSync(path.join(work, `${input}.host.o`))), `${driver} ${input}`).toBe(
        true,
      );
    }
    // The jail really is only the archive: the packed compiler runs there (its own files are
    // visible) but cannot find the host's <stdio.h>, which the same compiler finds on the host.
    expect(fs.existsSync('/usr/include/stdio.h')).toBe(true);
    fs.writeFileSync(path.join(work, 'host-header.c'), '#include <stdio.h>\nint x;\n');
    host([cc, '-E', 'host-header.c', '-o', 'host-header.host.i'], work);
    const probe = jailed(root, work, [`/usr/bin/${cc}`, '-E', 'host-header.c', '-o', 'host-header.jail.i']);
    expect(probe.status, probe.stderr).toBe(1);
    // gcc finds none of its include dirs there; clang finds its own but no stdio.h in them.
    expect(probe.stderr).toMatch(
      /host-header\.c:1:\d+: (error: no include path in which to search for stdio\.h|fatal error: 'stdio\.h' file not found)/,
    );
  }, 180_000);
});

describe('ToolchainCache', () => {
  it('packages once for concurrent and later calls, shares archives, and evicts over its limit', async () => {
    expect(have('gcc')).toBe(true);
    const dir = path.join(tmp, 'cache');
    let packed = 0;
    const counting: typeof packageToolchain = (c, out) => {
      packed++;
      return packageToolchain(c, out);
    };
    const cache = new ToolchainCache(dir, 10 * 1024 ** 3, counting);
    const [a, b] = await Promise.all([cache.get('gcc'), cache.get('/usr/bin/gcc')]);
    expect(packed).toBe(1);
    expect(b).toEqual(a);
    expect(a.archive).toBe(path.join(dir, `${a.spec.digest}.tar.gz`));

    // The index on disk makes a fresh cache (a restarted daemon) find it too.
    const reopened = new ToolchainCache(dir, 10 * 1024 ** 3, counting);
    expect(await reopened.get('gcc')).toEqual(a);
    expect(packed).toBe(1);

    // g++ packs the same files as gcc (each takes its sibling), so the archive is shared.
    const gxx = await reopened.get('g++');
    expect(packed).toBe(2);
    expect(gxx.spec.digest).toBe(a.spec.digest);
    expect(gxx.spec.compiler).toBe('/usr/bin/g++');

    // cc is another name of gcc's binary (through /etc/alternatives): gcc's package, run as cc.
    const cc = await reopened.get('cc');
    expect(packed).toBe(2);
    expect(cc.spec.digest).toBe(a.spec.digest);
    expect(cc.spec.compiler).toBe('/usr/bin/cc');
    expect((await reopened.find('cc'))?.spec.compiler).toBe('/usr/bin/cc');

    // gcc by a link in another directory: another archive (it holds that link), and over the limit.
    const links = path.join(tmp, 'links');
    fs.mkdirSync(links, { recursive: true });
    fs.symlinkSync('/usr/bin/gcc', path.join(links, 'gcc'));
    const size = fs.statSync(a.archive).size;
    const small = new ToolchainCache(dir, Math.floor(size * 1.5), counting);
    const linked = await small.get(path.join(links, 'gcc'));
    expect(packed).toBe(3);
    expect(linked.spec.digest).not.toBe(a.spec.digest);
    expect(fs.existsSync(linked.archive)).toBe(true);
    expect(fs.existsSync(a.archive)).toBe(false);
    expect(await small.size()).toBe(fs.statSync(linked.archive).size);
    await small.get('gcc');
    expect(packed).toBe(4);
    expect(fs.existsSync(linked.archive)).toBe(false);
  }, 180_000);
});

describe('ArchiveResolver', () => {
  it('declines what it cannot pack and refuses an archive whose digest does not match', async () => {
    const resolver = new ArchiveResolver({ tmpDir: tmp });
    expect(await resolver.package('/bin/sh')).toBeUndefined();
    const archive = path.join(tmp, 'fake.tar.gz');
    fs.writeFileSync(archive, 'x');
    const spec = { kind: 'archive', digest: '0'.repeat(64), hostTriples: [], compiler: '/usr/bin/gcc' };
    await expect(resolver.materialise(spec, archive, path.join(tmp, 'fake-root'))).rejects.toMatchObject({
      code: 'KILN_ERR_TOOLCHAIN_UNSAFE',
      statusCode: 400,
    });
    expect(fs.existsSync(path.join(tmp, 'fake-root'))).toBe(false);
  });
});

describe('kiln --package-toolchain', () => {
  const kiln = (...args: string[]) =>
    spawnSync(process.execPath, [NODE_CLIENT, '--package-toolchain', ...args], {
      encoding: 'utf8',
      cwd: tmp,
    });

  it('prints the spec as JSON', () => {
    const r = kiln('gcc', 'cli.tar.gz');
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out).toMatchObject({
      kind: 'archive',
      hostTriples: ['x86_64-unknown-linux-gnu'],
      compiler: '/usr/bin/gcc',
    });
    expect(out.size).toBe(fs.statSync(path.join(tmp, 'cli.tar.gz')).size);
  }, 60_000);

  it('reports a missing or unsupported compiler in one line', () => {
    for (const [args, message] of [
      [['/no/such/gcc', 'x.tar.gz'], /^kiln: compiler \/no\/such\/gcc not found/],
      [['/bin/sh', 'x.tar.gz'], /^kiln: cannot package \/bin\/sh: not gcc or clang/],
      [['gcc'], /^kiln: --package-toolchain needs a compiler and an output file/],
    ] as const) {
      const r = kiln(...args);
      expect(r.status).toBe(2);
      expect(r.stderr).toMatch(message);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
    }
    expect(fs.existsSync(path.join(tmp, 'x.tar.gz'))).toBe(false);
  });
});
