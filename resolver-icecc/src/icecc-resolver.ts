/**
 * Toolchains as icecream makes them: `icecc-create-env` packs a gcc or clang with everything it
 * loads into a tarball (once per compiler identity), or the operator names existing tarballs per
 * platform and target (ICECC_VERSION). Which machines run a tarball is read from the ELF header of
 * the compiler inside it; the worker checks that again before it keeps the tarball.
 */
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import {
  archiveCompression,
  type ExtractLimits,
  KILN_ERR_RESOLVER_CONFIG,
  KILN_ERR_RESOLVER_TOOLCHAIN,
  KILN_ERR_TOOLCHAIN_UNSAFE,
  type KilnError,
  type MaterialisedToolchain,
  type PackagedToolchain,
  readArchiveMember,
  readElf,
  readElfBuffer,
  safeExtractInChild,
  sha256File,
  type ToolchainResolver,
  type ToolchainSpec,
} from '@kiln/plugins';
import type { IceccConfig } from './config.js';
import { environmentFor, type IceccEnvironment, parseIceccVersion } from './icecc-version.js';

const run = promisify(execFile);
export const KIND = 'icecc';
/** gcc, g++, cc, c++, clang, clang++, with a cross prefix and a version suffix. */
const COMPILER_NAME = /(^|-)(gcc|g\+\+|cc|c\+\+|clang|clang\+\+)(-[0-9.]+)?$/;
/** Where icecc-create-env puts the drivers; the worker runs one of these. */
const DRIVERS = ['usr/bin/gcc', 'usr/bin/g++', 'usr/bin/clang'];

type Family = 'gcc' | 'clang';

export interface IceccResolverOptions {
  readonly config: IceccConfig;
  /** Where created tarballs are kept (the config's cache_dir wins). */
  readonly workDir: string;
  /** The triple of this machine: the native platform on clients, the one to run on for workers. */
  readonly hostTriple: string;
  readonly limits?: ExtractLimits;
}

/** What is kept beside a created tarball: the spec minus the driver, which depends on the caller. */
interface Stored {
  readonly digest: string;
  readonly hostTriples: readonly string[];
  readonly targetTriple: string;
  readonly family: Family;
}

/** The C driver beside a C++ one (g++-12 → gcc-12, clang++ → clang): what icecc-create-env takes. */
function cDriver(real: string, family: Family): string {
  const base = path.basename(real);
  const c =
    family === 'gcc'
      ? base.replace(/(g\+\+|c\+\+)(-[0-9.]+)?$/, (_m, _d, v = '') => `gcc${v}`)
      : base.replace(/clang\+\+(-[0-9.]+)?$/, (_m, v = '') => `clang${v}`);
  return path.join(path.dirname(real), c);
}

const archOf = (triple: string) => triple.split('-')[0] ?? triple;

async function ask(compiler: string, ...args: string[]): Promise<string> {
  const { stdout } = await run(compiler, args, { env: { ...process.env, LC_ALL: 'C' }, timeout: 30_000 });
  return stdout.trim();
}

export class IceccResolver implements ToolchainResolver {
  readonly kind = KIND;
  private readonly envs: readonly IceccEnvironment[];
  private readonly dir: string;
  private readonly nativeArch: string;
  /** Created or checked tarballs in flight or done, by key: each compiler is packed once. */
  private readonly work = new Map<string, Promise<Stored>>();

  /**
   * Parses icecc_version and checks its tarballs exist and are gzip'd or plain tars. Throws
   * KILN_ERR_RESOLVER_CONFIG otherwise, so the daemon does not start with a tarball that can never work.
   */
  constructor(private readonly options: IceccResolverOptions) {
    const { config } = options;
    this.nativeArch = archOf(options.hostTriple);
    this.dir = config.cache_dir ?? path.join(options.workDir, 'icecc');
    try {
      this.envs = config.icecc_version ? parseIceccVersion(config.icecc_version, this.nativeArch) : [];
    } catch (err) {
      throw KILN_ERR_RESOLVER_CONFIG(KIND, `icecc_version: ${(err as Error).message}`);
    }
    for (const env of this.envs) {
      let head: Buffer;
      try {
        const fd = fs.openSync(env.tarball, 'r');
        head = Buffer.alloc(6);
        fs.readSync(fd, head, 0, 6, 0);
        fs.closeSync(fd);
      } catch (err) {
        throw KILN_ERR_RESOLVER_CONFIG(
          KIND,
          `icecc_version: tarball ${env.tarball} cannot be read (${(err as NodeJS.ErrnoException).code})`,
        );
      }
      if (
        head[0] === 0xfd ||
        head.subarray(0, 3).toString('latin1') === 'BZh' ||
        head.readUInt32LE(0) === 0xfd2fb528
      )
        throw KILN_ERR_RESOLVER_CONFIG(
          KIND,
          `icecc_version: tarball ${env.tarball} is not gzip'd; make it with icecc-create-env --compression gzip`,
        );
    }
  }

  /**
   * A gcc or clang as a tarball: the configured one for its target, else one made with
   * icecc-create-env (once per compiler identity). Resolves undefined for anything not named and
   * answering like gcc or clang; rejects with KILN_ERR_RESOLVER_TOOLCHAIN when the tarball cannot be
   * made, is corrupt, or its compiler does not run on the platform it is listed for.
   */
  async package(compiler: string): Promise<PackagedToolchain | undefined> {
    return this.resolve(compiler, true);
  }

  /** The tarball made earlier (by this or an earlier daemon) for this compiler, if still current. */
  async find(compiler: string): Promise<PackagedToolchain | undefined> {
    return this.resolve(compiler, false).catch(() => undefined);
  }

  private async resolve(compiler: string, create: boolean): Promise<PackagedToolchain | undefined> {
    const name = path.basename(compiler);
    if (!COMPILER_NAME.test(name)) return undefined;
    const real = await fsp.realpath(compiler).catch(() => undefined);
    if (!real || !(await readElf(real).catch(() => undefined))) return undefined;
    const st = await fsp.stat(real);
    const identity = `${real}\0${st.size}\0${st.mtimeMs}\0${st.ino}`;
    // What `compiler` is costs two runs of it; they are remembered with the identity.
    const family = await this.remembered(`family\0${identity}`, async () => {
      const banner = await ask(compiler, '--version').catch(() => '');
      if (/clang/i.test(banner)) return 'clang';
      if (/Free Software Foundation|\(GCC\)|gcc/i.test(banner)) return 'gcc';
      return undefined;
    });
    if (!family) return undefined;
    const target = await this.remembered(`target\0${identity}`, () => ask(compiler, '-dumpmachine'));
    const cxx = /(\+\+)(-[0-9.]+)?$/.test(name);
    const driver = family === 'clang' ? '/usr/bin/clang' : cxx ? '/usr/bin/g++' : '/usr/bin/gcc';
    const env = environmentFor(this.envs, target, name, this.nativeArch);
    let tarball: string;
    let stored: Stored | undefined;
    if (env) {
      tarball = env.tarball;
      const tst = await fsp.stat(tarball).catch((err: NodeJS.ErrnoException) => {
        throw KILN_ERR_RESOLVER_TOOLCHAIN(KIND, compiler, `tarball ${tarball} cannot be read (${err.code})`);
      });
      const key = `env\0${tarball}\0${tst.size}\0${tst.mtimeMs}\0${driver}`;
      stored = await this.once(key, () => this.check(compiler, tarball, driver, family, target, env));
    } else {
      // One tarball serves both drivers (icecc-create-env packs gcc with g++): keyed by the C driver.
      const c = cDriver(real, family);
      const cst = c === real ? st : await fsp.stat(c).catch(() => st);
      const cIdentity = `${c}\0${cst.size}\0${cst.mtimeMs}\0${cst.ino}`;
      const key = createHash('sha256').update(cIdentity).digest('hex').slice(0, 32);
      tarball = path.join(this.dir, `${key}.tar.gz`);
      const meta = `${tarball}.json`;
      stored = await this.once(`made\0${key}`, async () => {
        const kept = await this.readStored(meta, tarball);
        if (kept) return kept;
        if (!create) throw new Error('not made yet');
        await this.create(compiler, real, family, tarball);
        const made = await this.check(compiler, tarball, driver, family, target);
        await fsp.writeFile(meta, JSON.stringify(made));
        return made;
      });
    }
    const spec: ToolchainSpec = {
      kind: KIND,
      digest: stored.digest,
      hostTriples: stored.hostTriples,
      targetTriple: stored.targetTriple,
      compiler: driver,
    };
    return { spec, archive: tarball };
  }

  private readonly facts = new Map<string, Promise<unknown>>();
  private remembered<T>(key: string, get: () => Promise<T>): Promise<T> {
    let p = this.facts.get(key) as Promise<T> | undefined;
    if (!p) {
      p = get();
      this.facts.set(key, p);
      p.catch(() => this.facts.delete(key));
    }
    return p;
  }

  /** Runs `make` once per key; a failure is forgotten, so a later compile tries again. */
  private once(key: string, make: () => Promise<Stored>): Promise<Stored> {
    let p = this.work.get(key);
    if (!p) {
      p = make();
      this.work.set(key, p);
      p.catch(() => this.work.delete(key));
    }
    return p;
  }

  private async readStored(meta: string, tarball: string): Promise<Stored | undefined> {
    try {
      const stored = JSON.parse(await fsp.readFile(meta, 'utf8')) as Stored;
      const st = await fsp.stat(tarball);
      return st.isFile() && typeof stored.digest === 'string' ? stored : undefined;
    } catch {
      return undefined;
    }
  }

  /** icecc-create-env for the C driver beside `compiler`, into `tarball` (through a rename). */
  private async create(compiler: string, real: string, family: Family, tarball: string): Promise<void> {
    // icecc-create-env takes the C driver and finds the C++ one beside it (gcc → g++).
    const c = cDriver(real, family);
    await fsp.mkdir(this.dir, { recursive: true });
    const tmp = path.join(this.dir, `.create-${randomBytes(6).toString('hex')}`);
    await fsp.mkdir(tmp);
    try {
      const { create_env, create_timeout } = this.options.config;
      let out: { stdout: string; stderr: string };
      try {
        out = await run(create_env, [c], {
          cwd: tmp,
          timeout: create_timeout * 1000,
          maxBuffer: 16 * 1024 * 1024,
        });
      } catch (err) {
        const e = err as NodeJS.ErrnoException & { stderr?: string; stdout?: string };
        if (e.code === 'ENOENT')
          throw KILN_ERR_RESOLVER_TOOLCHAIN(
            KIND,
            compiler,
            `${create_env} is not installed (apt-get install icecc, or set create_env)`,
          );
        const said = `${e.stdout ?? ''}${e.stderr ?? ''}`.trim().split('\n').slice(-2).join(' / ');
        throw KILN_ERR_RESOLVER_TOOLCHAIN(KIND, compiler, `${create_env} ${c} failed: ${said || e.message}`);
      }
      const made = (await fsp.readdir(tmp)).filter((f) => /\.tar(\.gz)?$/.test(f));
      if (made.length !== 1)
        throw KILN_ERR_RESOLVER_TOOLCHAIN(
          KIND,
          compiler,
          `${create_env} made no tarball: ${out.stdout.trim().split('\n').pop()}`,
        );
      await fsp.rename(path.join(tmp, made[0]!), tarball);
    } finally {
      await fsp.rm(tmp, { recursive: true, force: true });
    }
  }

  /**
   * Reads the driver's ELF header inside `tarball`: the host triple the toolchain runs on, which must
   * be the platform the tarball is listed for.
   */
  private async check(
    compiler: string,
    tarball: string,
    driver: string,
    family: Family,
    target: string,
    env?: IceccEnvironment,
  ): Promise<Stored> {
    const fail = (detail: string) => KILN_ERR_RESOLVER_TOOLCHAIN(KIND, compiler, detail);
    const compression = await archiveCompression(tarball);
    if (compression !== 'gzip' && compression !== 'none')
      throw fail(
        `tarball ${tarball} is ${compression}-compressed; make it with icecc-create-env --compression gzip`,
      );
    const member = await readArchiveMember(tarball, driver).catch((err: Error) => {
      throw fail(`tarball ${tarball} is corrupt: ${err.message}`);
    });
    if (!member) throw fail(`tarball ${tarball} has no ${driver}: not an icecc environment for ${family}`);
    const elf = await readElfBuffer(`${driver} in ${tarball}`, member.head).catch((err: KilnError) => {
      throw fail(err.message);
    });
    if (!elf) throw fail(`${driver} in ${tarball} is not an ELF executable`);
    if (env && elf.arch !== env.arch)
      throw fail(
        `${driver} in ${tarball} runs on ${elf.arch} machines, but the tarball is listed for platform ${env.platform}`,
      );
    return { digest: await sha256File(tarball), hostTriples: [elf.triple], targetTriple: target, family };
  }

  /**
   * Re-checks the digest, unpacks with the SDK's safe extraction, then reads the drivers' ELF
   * headers: a tarball whose compiler does not run on this worker is refused. Rejects with
   * KILN_ERR_TOOLCHAIN_UNSAFE (400), leaving nothing behind.
   */
  async materialise(spec: ToolchainSpec, archive: string, dest: string): Promise<MaterialisedToolchain> {
    if (spec.kind !== KIND) throw KILN_ERR_TOOLCHAIN_UNSAFE(archive, `kind "${spec.kind}" is not "${KIND}"`);
    const digest = await sha256File(archive);
    if (digest !== spec.digest)
      throw KILN_ERR_TOOLCHAIN_UNSAFE(archive, `its sha256 is ${digest}, the spec says ${spec.digest}`);
    await safeExtractInChild(archive, dest, this.options.limits);
    try {
      let drivers = 0;
      for (const rel of DRIVERS) {
        const file = path.join(dest, rel);
        const st = await fsp.lstat(file).catch(() => undefined);
        if (!st) continue;
        if (!st.isFile()) throw new Error(`${rel} is not a regular file`);
        const elf = await readElf(file).catch((err: Error) => {
          throw new Error(err.message);
        });
        if (!elf) throw new Error(`${rel} is not an ELF executable`);
        if (elf.arch !== this.nativeArch)
          throw new Error(`${rel} runs on ${elf.triple}, this worker is ${this.options.hostTriple}`);
        drivers++;
      }
      if (drivers === 0) throw new Error(`not an icecc environment: none of ${DRIVERS.join(', ')}`);
    } catch (err) {
      await fsp.rm(dest, { recursive: true, force: true });
      throw KILN_ERR_TOOLCHAIN_UNSAFE(archive, (err as Error).message);
    }
    return { root: dest };
  }
}
