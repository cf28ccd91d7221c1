/**
 * The resolver conformance kit: every toolchain resolver plugin, built-in or third-party, runs it
 * from a vitest file. It packages a real compiler (when the resolver has `package`), materialises
 * the archive as a worker would, and feeds `materialise` what a hostile client could send: a wrong
 * digest, absolute paths, `..`, symbolic links leaving the root, a destination that already exists.
 *
 * @example
 * ```ts
 * import { resolverConformance } from '@kiln/plugins/conformance';
 * resolverConformance({ name: 'mine', create: () => new MyResolver(), compiler: '/usr/bin/gcc' });
 * ```
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PackagedToolchain, ToolchainResolver, ToolchainSpec } from '../resolver.js';
import { exists, hostEntries } from './host-probe.js';
import { type ConformanceTarEntry, writeTarGz } from './tar-writer.js';

export type { ConformanceTarEntry } from './tar-writer.js';

export interface ResolverConformanceOptions {
  /** Shown in the test names. */
  readonly name: string;
  /** Makes a resolver; called once for the suite, and once more to check its kind is stable. */
  readonly create: () => ToolchainResolver | Promise<ToolchainResolver>;
  /**
   * For a resolver with `package`: the absolute path of a compiler it handles (e.g. /usr/bin/gcc).
   * The kit packages it once and uses that archive for the `materialise` cases.
   */
  readonly compiler?: string;
  /** A compiler the resolver does not handle; by default a shell script the kit writes. */
  readonly foreignCompiler?: string;
  /** For a resolver without `package`: an archive of its own kind, written into `dir`. */
  readonly packaged?: (dir: string) => Promise<PackagedToolchain>;
  /**
   * Writes the hostile archives in the resolver's own format. By default a gzip'd tar, the format
   * of every kiln resolver so far; a resolver with another format maps the entries onto its own.
   */
  readonly writeArchive?: (entries: readonly ConformanceTarEntry[], file: string) => Promise<void>;
  /**
   * For a resolver that names toolchains by version (`spec.version`, no archive; rustup): the kit
   * then checks `resolveVersion` instead of archives. `unavailable` turns the packaged spec into one that
   * names a toolchain the worker must refuse (another commit of the same release).
   */
  readonly byVersion?: { readonly unavailable: (spec: ToolchainSpec) => ToolchainSpec };
}

const TIMEOUT = 120_000;

async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Declares the conformance suite for one toolchain resolver. */
export function resolverConformance(options: ResolverConformanceOptions): void {
  describe(`resolver conformance: ${options.name}`, () => {
    const mark = `kiln-conformance-${randomBytes(6).toString('hex')}`;
    let resolver: ToolchainResolver;
    let tmp: string;
    let own: PackagedToolchain;
    let cases = 0;

    /** A fresh, empty parent directory and a `dest` in it that does not exist. */
    const freshDest = async () => {
      const parent = path.join(tmp, `case-${++cases}`);
      await fs.mkdir(parent);
      return { parent, dest: path.join(parent, 'root') };
    };

    beforeAll(async () => {
      tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'kiln-resolver-conformance-'));
      resolver = await options.create();
      if (resolver.package) {
        if (!options.compiler)
          throw new Error('resolverConformance: a resolver with package() needs `compiler`');
        const packaged = await resolver.package(options.compiler);
        if (!packaged) throw new Error(`${options.name} does not package ${options.compiler}`);
        own = packaged;
      } else {
        if (!options.packaged)
          throw new Error('resolverConformance: a resolver without package() needs `packaged`');
        own = await options.packaged(tmp);
      }
    }, TIMEOUT);

    afterAll(async () => {
      if (tmp) await fs.rm(tmp, { recursive: true, force: true });
      expect(await exists(`/tmp/${mark}`), 'an absolute path reached the host').toBe(false);
    });

    it('has a stable, non-empty kind', async () => {
      expect(resolver.kind).toBeTypeOf('string');
      expect(resolver.kind.trim()).not.toBe('');
      expect(resolver.kind).toBe(resolver.kind);
      expect((await options.create()).kind).toBe(resolver.kind);
      expect(own.spec.kind).toBe(resolver.kind);
    });

    const hostTriplesKnown = (spec: ToolchainSpec) => {
      expect(spec.digest).toMatch(/^[0-9a-f]{64}$/);
      expect(Array.isArray(spec.hostTriples)).toBe(true);
      expect(spec.hostTriples.length).toBeGreaterThan(0);
      for (const t of spec.hostTriples) expect(t).toMatch(/^[A-Za-z0-9_.]+(-[A-Za-z0-9_.]+)+$/);
      expect(path.isAbsolute(spec.compiler), spec.compiler).toBe(true);
    };

    it('resolves undefined for a compiler it does not handle', { timeout: TIMEOUT }, async (ctx) => {
      if (!resolver.package) ctx.skip();
      let foreign = options.foreignCompiler;
      if (!foreign) {
        foreign = path.join(tmp, 'not-a-compiler');
        await fs.writeFile(foreign, '#!/bin/sh\necho "not a compiler"\n', { mode: 0o755 });
      }
      await expect(resolver.package!(foreign)).resolves.toBeUndefined();
    });

    if (options.byVersion) {
      const { unavailable } = options.byVersion;
      it('names a compiler it handles by version: no archive, a digest, host triples', async () => {
        hostTriplesKnown(own.spec);
        expect(own.archive).toBeUndefined();
        expect(own.spec.version && Object.keys(own.spec.version).length).toBeGreaterThan(0);
        // The same toolchain gets the same name every time.
        expect((await resolver.package?.(options.compiler!))?.spec.digest).toBe(own.spec.digest);
      });

      it('resolves its own spec into a root holding the compiler', { timeout: TIMEOUT }, async () => {
        expect(resolver.resolveVersion, 'a by-version resolver has resolveVersion()').toBeTypeOf('function');
        const { dest } = await freshDest();
        const { root } = await resolver.resolveVersion!(own.spec, dest);
        expect(root === dest || root.startsWith(`${dest}/`), `${root} is under ${dest}`).toBe(true);
        const compiler = path.join(root, own.spec.compiler);
        const st = await fs.stat(compiler);
        expect(st.isFile(), `${own.spec.compiler} in the root`).toBe(true);
        expect(st.mode & 0o111, 'the compiler is executable').not.toBe(0);
      });

      /** resolve must reject with a KilnError and leave the parent of `dest` as it was: empty. */
      it('refuses a spec it cannot provide exactly, leaving nothing behind', {
        timeout: TIMEOUT,
      }, async () => {
        const { parent, dest } = await freshDest();
        const err = await resolver.resolveVersion!(unavailable(own.spec), dest).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(err, 'resolve rejects').toBeInstanceOf(Error);
        expect((err as { code?: unknown }).code, String(err)).toMatch(/^KILN_ERR_/);
        expect(await hostEntries(parent), 'nothing left behind').toEqual([]);
      });

      it('refuses an archive for a by-version kind, leaving nothing behind', {
        timeout: TIMEOUT,
      }, async () => {
        const archive = path.join(tmp, `archive-${++cases}.tar.gz`);
        await writeTarGz([{ type: 'file', path: 'bin/rustc', data: '#!/bin/sh\n' }], archive);
        const { parent, dest } = await freshDest();
        const err = await resolver
          .materialise({ ...own.spec, digest: await sha256File(archive) }, archive, dest)
          .then(
            () => undefined,
            (e: unknown) => e,
          );
        expect((err as { code?: unknown })?.code, String(err)).toMatch(/^KILN_ERR_/);
        expect(await hostEntries(parent)).toEqual([]);
      });

      it('refuses a dest that already exists, and leaves it alone', { timeout: TIMEOUT }, async () => {
        const { dest } = await freshDest();
        await fs.mkdir(dest);
        await fs.writeFile(path.join(dest, 'marker'), mark);
        const err = await resolver.resolveVersion!(own.spec, dest).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect((err as { code?: unknown })?.code, String(err)).toMatch(/^KILN_ERR_/);
        expect(await hostEntries(dest)).toEqual(['marker']);
      });
      return;
    }

    it('packages a compiler it handles: digest is the archive sha256, host triples known', async (ctx) => {
      if (!resolver.package) ctx.skip();
      const { spec, archive } = own;
      hostTriplesKnown(spec);
      expect(archive, 'an archive-based resolver packages an archive').toBeTypeOf('string');
      expect(await sha256File(archive!)).toBe(spec.digest);
    });

    it('materialises its own archive into a root holding the compiler', { timeout: TIMEOUT }, async () => {
      const { dest } = await freshDest();
      const { root } = await resolver.materialise(own.spec, own.archive!, dest);
      expect(root === dest || root.startsWith(`${dest}/`), `${root} is under ${dest}`).toBe(true);
      const compiler = path.join(root, own.spec.compiler);
      const st = await fs.stat(compiler);
      expect(st.isFile(), `${own.spec.compiler} in the root`).toBe(true);
      expect(st.mode & 0o111, 'the compiler is executable').not.toBe(0);
      const real = await fs.realpath(compiler);
      const realRoot = await fs.realpath(root);
      expect(real.startsWith(`${realRoot}/`), `${real} stays in the root`).toBe(true);
    });

    /** materialise must reject with a KilnError and leave the parent of `dest` as it was: empty. */
    const refuses = async (spec: ToolchainSpec, archive: string) => {
      const { parent, dest } = await freshDest();
      const err = await resolver.materialise(spec, archive, dest).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err, 'materialise rejects').toBeInstanceOf(Error);
      expect((err as { code?: unknown }).code, String(err)).toMatch(/^KILN_ERR_/);
      expect(await hostEntries(parent), 'nothing left behind').toEqual([]);
    };

    it('refuses an archive whose digest is not the spec', { timeout: TIMEOUT }, async () => {
      await refuses({ ...own.spec, digest: '0'.repeat(64) }, own.archive!);
      const changed = path.join(tmp, 'changed-archive');
      await fs.copyFile(own.archive!, changed);
      await fs.appendFile(changed, Buffer.from([0]));
      await refuses(own.spec, changed);
    });

    const ok: ConformanceTarEntry[] = [
      { type: 'dir', path: 'usr/' },
      { type: 'file', path: 'usr/ok.txt', data: 'fine' },
    ];
    const hostile: [string, ConformanceTarEntry[]][] = [
      ['an absolute path', [...ok, { type: 'file', path: `/tmp/${mark}`, data: 'x' }]],
      ['a ".." path', [...ok, { type: 'file', path: `../${mark}`, data: 'x' }]],
      ['a ".." inside a path', [...ok, { type: 'file', path: `usr/../../${mark}`, data: 'x' }]],
      ['a symbolic link to an absolute path', [...ok, { type: 'symlink', path: 'usr/etc', target: '/etc' }]],
      ['a symbolic link leaving the root', [...ok, { type: 'symlink', path: 'usr/up', target: '../..' }]],
      [
        'a file written through a symbolic link leaving the root',
        [
          ...ok,
          { type: 'symlink', path: 'usr/out', target: `../../${mark}` },
          { type: 'file', path: 'usr/out/evil', data: 'x' },
        ],
      ],
      [
        'a chain of symbolic links leaving the root',
        [
          { type: 'dir', path: 'a/b/' },
          { type: 'symlink', path: 'a/b/up', target: '../..' },
          { type: 'symlink', path: 'a/b/x', target: 'up/..' },
        ],
      ],
    ];
    it.each(hostile)(
      'refuses an archive with %s, leaving nothing behind',
      { timeout: TIMEOUT },
      async (_, entries) => {
        const archive = path.join(tmp, `hostile-${++cases}.tar.gz`);
        await (options.writeArchive ?? writeTarGz)(entries, archive);
        // The right digest: the archive itself must be refused, not its checksum.
        await refuses({ ...own.spec, digest: await sha256File(archive) }, archive);
        expect(await exists(`/tmp/${mark}`)).toBe(false);
      },
    );

    it('refuses a dest that already exists, and leaves it alone', { timeout: TIMEOUT }, async () => {
      const { dest } = await freshDest();
      await fs.mkdir(dest);
      await fs.writeFile(path.join(dest, 'marker'), mark);
      const err = await resolver.materialise(own.spec, own.archive!, dest).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect((err as { code?: unknown })?.code, String(err)).toMatch(/^KILN_ERR_/);
      expect(await hostEntries(dest)).toEqual(['marker']);
      expect(await fs.readFile(path.join(dest, 'marker'), 'utf8')).toBe(mark);
    });
  });
}
