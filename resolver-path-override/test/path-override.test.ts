/**
 * Client-side behaviour of the path_override resolver without a cluster: path mapping for every
 * OS's spelling, no_dist, and each bad entry a clear error (at start) or a rejected package (at
 * compile time, which the daemon counts and compiles locally).
 */
import 'reflect-metadata';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadPlugin, TOOLCHAIN_RESOLVER } from '@kiln/plugins';
import { writeTarGz } from '@kiln/plugins/conformance';
import { container } from 'tsyringe';
import { afterAll, describe, expect, it } from 'vitest';
import { normaliseClientPath, PathOverrideResolver } from '../src/path-override-resolver.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-path-override-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** A tiny archive whose "compiler" is /bin/true (a real ELF executable) behind a link. */
async function archiveWithTrue(name: string): Promise<string> {
  const file = path.join(tmp, name);
  await writeTarGz(
    [
      { type: 'dir', path: 'opt/cross/bin/' },
      { type: 'file', path: 'opt/cross/bin/cc-real', data: fs.readFileSync('/bin/true'), mode: 0o755 },
      { type: 'symlink', path: 'opt/cross/bin/cc', target: 'cc-real' },
      { type: 'file', path: 'opt/cross/README', data: 'not a compiler' },
    ],
    file,
  );
  return file;
}

const codeOf = (p: Promise<unknown>) =>
  p.then(
    () => 'resolved',
    (e: { code?: string; message: string }) => `${e.code}: ${e.message}`,
  );

describe('path_override resolver', () => {
  it('spells client paths one way: either slash, drive letters and UNC paths case-insensitive', () => {
    expect(normaliseClientPath('C:\\Tools\\GCC\\bin\\gcc.exe')).toBe('c:/tools/gcc/bin/gcc.exe');
    expect(normaliseClientPath('c:/tools//gcc/bin/gcc.exe')).toBe('c:/tools/gcc/bin/gcc.exe');
    expect(normaliseClientPath('\\\\build\\Share\\gcc.exe')).toBe('//build/share/gcc.exe');
    expect(normaliseClientPath('/Users/Me/bin/gcc')).toBe('/Users/Me/bin/gcc');
  });

  it('maps a Windows or macOS compiler path to the archive and its compiler, read from its ELF header', async () => {
    const archive = await archiveWithTrue('node.tar.gz');
    const r = new PathOverrideResolver({
      toolchains: [
        {
          type: 'path_override',
          compiler_executable: 'C:\\cross\\cc.exe',
          archive,
          archive_compiler_executable: '/opt/cross/bin/cc',
        },
        {
          type: 'path_override',
          compiler_executable: '/Users/me/cross/cc',
          archive,
          archive_compiler_executable: '/opt/cross/bin/cc',
        },
      ],
    });
    const win = await r.package('c:/CROSS/cc.exe');
    const mac = await r.package('/Users/me/cross/cc');
    expect(win?.spec).toEqual(mac?.spec);
    expect(win?.spec.kind).toBe('path_override');
    expect(win?.spec.compiler).toBe('/opt/cross/bin/cc');
    expect(win?.spec.hostTriples).toEqual([
      `${process.arch === 'arm64' ? 'aarch64' : 'x86_64'}-unknown-linux-gnu`,
    ]);
    expect(win?.archive).toBe(archive);
    expect(await r.find('C:\\cross\\cc.exe')).toEqual(win);
    expect(await r.package('C:\\other\\cc.exe')).toBeUndefined();
  });

  it('refuses a no_dist compiler with KILN_ERR_RESOLVER_NO_DIST', async () => {
    const r = new PathOverrideResolver({
      toolchains: [{ type: 'no_dist', compiler_executable: '/usr/bin/cc' }],
    });
    expect(await codeOf(r.package('/usr/bin/cc'))).toMatch(/^KILN_ERR_RESOLVER_NO_DIST: /);
  });

  it('stops at start for a missing archive or an entry without archive_compiler_executable', () => {
    const missing = path.join(tmp, 'nope.tar.gz');
    expect(
      () =>
        new PathOverrideResolver({
          toolchains: [
            {
              type: 'path_override',
              compiler_executable: '/a/cc',
              archive: missing,
              archive_compiler_executable: '/cc',
            },
          ],
        }),
    ).toThrow(/KILN_ERR|cannot be read \(ENOENT\)/);
    expect(
      () =>
        new PathOverrideResolver({
          toolchains: [{ type: 'path_override', compiler_executable: '/a/cc', archive: missing }],
        }),
    ).toThrow(/needs archive_compiler_executable/);
  });

  it('the loader reports a bad table by key, and a missing archive as a register failure', async () => {
    const load = (config: unknown) =>
      codeOf(
        loadPlugin({
          spec: 'path-override',
          kind: 'resolver',
          config,
          container: container.createChildContainer(),
          baseDir: tmp,
        }),
      );
    expect(await load({ toolchains: [{ type: 'bogus', compiler_executable: '/cc' }] })).toMatch(
      /KILN_ERR_PLUGIN_CONFIG: .*toolchains\[0\]\.type/,
    );
    expect(
      await load({
        toolchains: [
          {
            type: 'path_override',
            compiler_executable: '/cc',
            archive: '/nonexistent/a.tgz',
            archive_compiler_executable: '/cc',
          },
        ],
      }),
    ).toMatch(/KILN_ERR_RESOLVER_CONFIG: .*\/nonexistent\/a\.tgz cannot be read/);
    const scope = container.createChildContainer();
    await loadPlugin({
      spec: 'path-override',
      kind: 'resolver',
      config: undefined,
      container: scope,
      baseDir: tmp,
    });
    expect(scope.resolveAll(TOOLCHAIN_RESOLVER).map((r) => r.kind)).toEqual(['path_override']);
  });

  it('rejects at compile time an archive that lacks its compiler, is not ELF, runs elsewhere, or is corrupt', async () => {
    const archive = await archiveWithTrue('node2.tar.gz');
    const corrupt = path.join(tmp, 'corrupt.tar.gz');
    fs.writeFileSync(corrupt, fs.readFileSync(archive).subarray(0, 2000));
    const entry = (over: object) => ({
      type: 'path_override' as const,
      compiler_executable: '/c/cc',
      archive,
      archive_compiler_executable: '/opt/cross/bin/cc',
      ...over,
    });
    const pkg = (over: object) =>
      codeOf(new PathOverrideResolver({ toolchains: [entry(over)] }).package('/c/cc'));
    expect(await pkg({ archive_compiler_executable: '/usr/bin/gcc' })).toMatch(
      /^KILN_ERR_RESOLVER_TOOLCHAIN: .*has no archive_compiler_executable \/usr\/bin\/gcc/,
    );
    expect(await pkg({ archive_compiler_executable: '/opt/cross/README' })).toMatch(/is not executable/);
    expect(await pkg({ host_triple: 'riscv64gc-unknown-linux-gnu' })).toMatch(
      /runs on .*, not on host_triple riscv64gc/,
    );
    expect(await pkg({ archive: corrupt })).toMatch(/^KILN_ERR_RESOLVER_TOOLCHAIN: .*unreadable/);
    // The archive removed after start: a rejection, not a hang.
    const gone = path.join(tmp, 'gone.tar.gz');
    fs.copyFileSync(archive, gone);
    const r = new PathOverrideResolver({ toolchains: [entry({ archive: gone })] });
    fs.rmSync(gone);
    expect(await codeOf(r.package('/c/cc'))).toMatch(
      /^KILN_ERR_RESOLVER_TOOLCHAIN: .*cannot be read \(ENOENT\)/,
    );
  });
});
