/**
 * sccache-dist's `path_override`: a compiler the client calls (any OS, any path) maps to an archive
 * prepared on Linux, whose own compiler the worker runs. The client only preprocesses, so a macOS or
 * Windows machine can build for Linux on a Linux cluster. `no_dist` keeps a compiler local.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import {
  type ExtractLimits,
  KILN_ERR_RESOLVER_CONFIG,
  KILN_ERR_RESOLVER_NO_DIST,
  KILN_ERR_RESOLVER_TOOLCHAIN,
  KILN_ERR_TOOLCHAIN_UNSAFE,
  type MaterialisedToolchain,
  type PackagedToolchain,
  readArchiveMember,
  readElfBuffer,
  safeExtractInChild,
  sha256File,
  type ToolchainResolver,
  type ToolchainSpec,
} from '@kiln/plugins';
import type { PathOverrideConfig, ToolchainEntry } from './config.js';

export const KIND = 'path_override';

/**
 * A client path in one spelling for every OS: forward slashes, no doubled ones, and a Windows
 * path (drive letter or UNC) in lower case, as Windows compares them.
 */
export function normaliseClientPath(p: string): string {
  const slashes = p.trim().replace(/\\/g, '/');
  const unc = slashes.startsWith('//');
  const single = (unc ? '/' : '') + slashes.replace(/\/{2,}/g, '/');
  return unc || /^[A-Za-z]:\//.test(single) ? single.toLowerCase() : single;
}

interface Prepared {
  /** The archive's size and mtime when it was hashed: a changed archive is hashed again. */
  readonly stamp: string;
  readonly packaged: PackagedToolchain;
}

export class PathOverrideResolver implements ToolchainResolver {
  readonly kind = KIND;
  private readonly entries: ReadonlyMap<string, ToolchainEntry>;
  private readonly prepared = new Map<string, Promise<Prepared>>();

  /**
   * Checks the entries: a path_override needs an archive that exists and an
   * archive_compiler_executable. Throws KILN_ERR_RESOLVER_CONFIG naming the entry otherwise, so that
   * the daemon does not start with a mapping that can never work.
   */
  constructor(
    config: PathOverrideConfig,
    private readonly limits: ExtractLimits = {},
  ) {
    const entries = new Map<string, ToolchainEntry>();
    (config.toolchains ?? []).forEach((entry, i) => {
      const where = `toolchains[${i}] (compiler_executable = ${JSON.stringify(entry.compiler_executable)})`;
      const key = normaliseClientPath(entry.compiler_executable);
      if (entries.has(key)) throw KILN_ERR_RESOLVER_CONFIG(KIND, `${where}: that compiler is listed twice`);
      if (entry.type === 'path_override') {
        if (!entry.archive)
          throw KILN_ERR_RESOLVER_CONFIG(KIND, `${where}: type = "path_override" needs archive`);
        if (!entry.archive_compiler_executable)
          throw KILN_ERR_RESOLVER_CONFIG(
            KIND,
            `${where}: type = "path_override" needs archive_compiler_executable (the compiler's path inside the archive)`,
          );
        let st: fs.Stats | undefined;
        try {
          st = fs.statSync(entry.archive);
        } catch (err) {
          throw KILN_ERR_RESOLVER_CONFIG(
            KIND,
            `${where}: archive ${entry.archive} cannot be read (${(err as NodeJS.ErrnoException).code}); make it with kiln --package-toolchain on a Linux machine`,
          );
        }
        if (!st.isFile())
          throw KILN_ERR_RESOLVER_CONFIG(KIND, `${where}: archive ${entry.archive} is not a file`);
      }
      entries.set(key, entry);
    });
    this.entries = entries;
  }

  private async entryFor(compiler: string): Promise<ToolchainEntry | undefined> {
    const direct = this.entries.get(normaliseClientPath(compiler));
    if (direct) return direct;
    // The configured path may be the real file behind the link the build calls.
    const real = await fsp.realpath(compiler).catch(() => undefined);
    return real ? this.entries.get(normaliseClientPath(real)) : undefined;
  }

  /**
   * The archive mapped from `compiler`. Resolves undefined for a compiler no entry names; rejects
   * with KILN_ERR_RESOLVER_NO_DIST for a `no_dist` one, and with KILN_ERR_RESOLVER_TOOLCHAIN when the
   * archive went missing, lacks its compiler, or that compiler does not run on `host_triple`.
   */
  async package(compiler: string): Promise<PackagedToolchain | undefined> {
    const entry = await this.entryFor(compiler);
    if (!entry) return undefined;
    if (entry.type === 'no_dist') throw KILN_ERR_RESOLVER_NO_DIST(compiler);
    const archive = entry.archive!;
    const st = await fsp.stat(archive).catch((err: NodeJS.ErrnoException) => {
      throw KILN_ERR_RESOLVER_TOOLCHAIN(KIND, compiler, `archive ${archive} cannot be read (${err.code})`);
    });
    const stamp = `${st.size}:${st.mtimeMs}:${st.ino}`;
    let work = this.prepared.get(archive);
    const done = work && (await work.catch(() => undefined));
    if (!done || done.stamp !== stamp) {
      work = this.prepare(compiler, entry, stamp);
      this.prepared.set(archive, work);
      work.catch(() => this.prepared.delete(archive));
    }
    return (await work!).packaged;
  }

  /** A package made earlier by this process for `compiler` when its archive is unchanged. */
  async find(compiler: string): Promise<PackagedToolchain | undefined> {
    const entry = await this.entryFor(compiler);
    if (entry?.type !== 'path_override') return undefined;
    const done = await this.prepared.get(entry.archive!)?.catch(() => undefined);
    const st = await fsp.stat(entry.archive!).catch(() => undefined);
    return done && st && done.stamp === `${st.size}:${st.mtimeMs}:${st.ino}` ? done.packaged : undefined;
  }

  private async prepare(compiler: string, entry: ToolchainEntry, stamp: string): Promise<Prepared> {
    const archive = entry.archive!;
    const inside = path.posix.normalize(entry.archive_compiler_executable!);
    const fail = (detail: string) => KILN_ERR_RESOLVER_TOOLCHAIN(KIND, compiler, detail);
    const member = await readArchiveMember(archive, inside).catch((err: Error) => {
      throw fail(`archive ${archive} is unreadable: ${err.message}`);
    });
    if (!member) throw fail(`archive ${archive} has no archive_compiler_executable ${inside}`);
    if (!member.executable) throw fail(`${inside} in ${archive} is not executable`);
    const elf = await readElfBuffer(`${inside} in ${archive}`, member.head).catch((err: Error) => {
      throw fail(err.message);
    });
    if (!elf) throw fail(`${inside} in ${archive} is not a Linux (ELF) executable`);
    if (entry.host_triple && entry.host_triple !== elf.triple)
      throw fail(`${inside} in ${archive} runs on ${elf.triple}, not on host_triple ${entry.host_triple}`);
    const spec: ToolchainSpec = {
      kind: KIND,
      digest: await sha256File(archive),
      hostTriples: [elf.triple],
      compiler: inside,
    };
    return { stamp, packaged: { spec, archive } };
  }

  /**
   * Re-checks the archive's digest against the spec and unpacks it with the SDK's safe extraction.
   * Rejects with KILN_ERR_TOOLCHAIN_UNSAFE for a wrong digest or an unsafe archive.
   */
  async materialise(spec: ToolchainSpec, archive: string, dest: string): Promise<MaterialisedToolchain> {
    if (spec.kind !== KIND) throw KILN_ERR_TOOLCHAIN_UNSAFE(archive, `kind "${spec.kind}" is not "${KIND}"`);
    const digest = await sha256File(archive);
    if (digest !== spec.digest)
      throw KILN_ERR_TOOLCHAIN_UNSAFE(archive, `its sha256 is ${digest}, the spec says ${spec.digest}`);
    await safeExtractInChild(archive, dest, this.limits);
    return { root: dest };
  }
}
