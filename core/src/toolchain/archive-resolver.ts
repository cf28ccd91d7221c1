/**
 * The built-in resolver for gcc and clang packed by kiln itself (kind "archive"): the client packs
 * the compiler with everything it loads; the worker checks and unpacks the archive.
 */
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import type {
  MaterialisedToolchain,
  PackagedToolchain,
  ToolchainResolver,
  ToolchainSpec,
} from '@kiln/plugins';
import { type ExtractLimits, safeExtractInChild } from '@kiln/plugins';
import { KILN_ERR_TOOLCHAIN_UNSAFE, KILN_ERR_TOOLCHAIN_UNSUPPORTED } from '../errors.js';
import { sha256File } from '../util/sha256-file.js';
import { packageToolchain } from './package.js';
import type { ToolchainCache } from './toolchain-cache.js';

export interface ArchiveResolverOptions {
  /** Client side: where packaged toolchains are kept; without it every call packs into `tmpDir`. */
  readonly cache?: ToolchainCache;
  readonly tmpDir?: string;
  /** Worker side: limits on what an uploaded archive may unpack to. */
  readonly limits?: ExtractLimits;
}

export class ArchiveResolver implements ToolchainResolver {
  readonly kind = 'archive';

  constructor(private readonly options: ArchiveResolverOptions = {}) {}

  /**
   * Packs `compiler`; resolves undefined when it is not a gcc or clang this resolver can pack,
   * rejects with a KilnError when packing fails.
   */
  async package(compiler: string): Promise<PackagedToolchain | undefined> {
    try {
      if (this.options.cache) return await this.options.cache.get(compiler);
      const dir = this.options.tmpDir ?? os.tmpdir();
      const archive = path.join(dir, `kiln-toolchain-${randomBytes(6).toString('hex')}.tar.gz`);
      return { spec: await packageToolchain(compiler, archive), archive };
    } catch (err) {
      if ((err as { code?: string }).code === KILN_ERR_TOOLCHAIN_UNSUPPORTED.code) return undefined;
      throw err;
    }
  }

  /** The package stored in the cache for `compiler`, if there is one and it is still current. */
  async find(compiler: string): Promise<PackagedToolchain | undefined> {
    return this.options.cache?.find(compiler).catch(() => undefined);
  }

  /**
   * Re-checks the archive's digest against the spec, then unpacks it to `dest` with safeExtract, in a child process.
   * Rejects with KILN_ERR_TOOLCHAIN_UNSAFE (400) for a wrong digest or an unsafe archive.
   */
  async materialise(spec: ToolchainSpec, archive: string, dest: string): Promise<MaterialisedToolchain> {
    if (spec.kind !== this.kind)
      throw KILN_ERR_TOOLCHAIN_UNSAFE(archive, `kind "${spec.kind}" is not "archive"`);
    const digest = await sha256File(archive);
    if (digest !== spec.digest)
      throw KILN_ERR_TOOLCHAIN_UNSAFE(archive, `its sha256 is ${digest}, the spec says ${spec.digest}`);
    await safeExtractInChild(archive, dest, this.options.limits);
    return { root: dest };
  }
}
