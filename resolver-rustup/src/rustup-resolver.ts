/**
 * Rust toolchains named instead of shipped: a client names its rustc by `rustc -vV` (release,
 * commit hash) and the target it compiles for; a worker finds an installed rustup toolchain with
 * exactly that commit for its own host (`rustup toolchain list`, `rustup which`), or installs it
 * when its config allows (`rustup toolchain install`, `rustup target add`), and links what rustc
 * needs into a root for the sandbox. Another commit is refused, never approximated: crate metadata
 * from two commits do not mix.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import {
  KILN_ERR_RESOLVER_TOOLCHAIN,
  type MaterialisedToolchain,
  type PackagedToolchain,
  type ToolchainResolver,
  type ToolchainSpec,
  versionDigest,
} from '@kiln/plugins';
import type { RustupConfig } from './config.js';

export const KIND = 'rustup';
/** Where rustc sits in the root a worker makes; its sysroot is /rust. */
export const ROOT_RUSTC = '/rust/bin/rustc';
/** coreutils env, in the root too: `env -C <dir>` runs rustc in the client's working directory. */
export const ROOT_ENV = '/usr/bin/env';

export interface RustcVersion {
  readonly release: string;
  readonly commit: string;
  readonly commitDate: string;
  readonly host: string;
}

/** `rustc -vV` parsed; undefined when it is not rustc's answer. */
export function parseRustcVersion(text: string): RustcVersion | undefined {
  if (!/^rustc \S+/.test(text)) return undefined;
  const field = (name: string) => new RegExp(`^${name}: (\\S+)$`, 'm').exec(text)?.[1];
  const [release, commit, commitDate, host] = ['release', 'commit-hash', 'commit-date', 'host'].map(field);
  if (!release || !host) return undefined;
  return { release, commit: commit ?? 'unknown', commitDate: commitDate ?? 'unknown', host };
}

/**
 * The toolchain names to install for a version, most likely first: a stable release by its number;
 * a nightly or beta by date (a nightly is dated the day after its commit, sometimes the same day).
 */
export function installCandidates(v: RustcVersion): string[] {
  const channel = /-(nightly|beta)/.exec(v.release)?.[1];
  if (!channel) return [v.release];
  if (!/^\d{4}-\d{2}-\d{2}$/.test(v.commitDate)) return [];
  const next = new Date(`${v.commitDate}T00:00:00Z`);
  next.setUTCDate(next.getUTCDate() + 1);
  return [`${channel}-${next.toISOString().slice(0, 10)}`, `${channel}-${v.commitDate}`];
}

export interface RustupResolverOptions {
  readonly config: RustupConfig;
  /** This machine's triple: the host a worker resolves toolchains for. */
  readonly hostTriple: string;
  /** Receives every rustup command line this resolver runs (tests assert them). */
  readonly onCommand?: (argv: readonly string[]) => void;
  /** Runs a command; by default execFile with the config's timeout (tests may record instead). */
  readonly exec?: (file: string, args: readonly string[], timeoutMs: number) => Promise<string>;
}

interface Found {
  readonly name: string;
  readonly sysroot: string;
  readonly version: RustcVersion;
}

const fail = (what: string, detail: string) => KILN_ERR_RESOLVER_TOOLCHAIN(KIND, what, detail);

function defaultExec(file: string, args: readonly string[], timeoutMs: number, env: NodeJS.ProcessEnv) {
  return new Promise<string>((resolve, reject) => {
    execFile(
      file,
      [...args],
      { timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 16 << 20, env },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`${[file, ...args].join(' ')}: ${stderr.trim() || err.message}`));
        else resolve(stdout);
      },
    );
  });
}

/** Hard links `from` at `to` (a copy across file systems), making its directory. */
async function link(from: string, to: string): Promise<void> {
  await fsp.mkdir(path.dirname(to), { recursive: true });
  try {
    await fsp.link(from, to);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EXDEV') throw err;
    await fsp.copyFile(from, to);
    await fsp.chmod(to, (await fsp.stat(from)).mode & 0o7777);
  }
}

/** Links a directory tree, files and symbolic links as they are. */
async function linkTree(from: string, to: string): Promise<void> {
  await fsp.mkdir(to, { recursive: true });
  for (const e of await fsp.readdir(from, { withFileTypes: true })) {
    const [src, dst] = [path.join(from, e.name), path.join(to, e.name)];
    if (e.isDirectory()) await linkTree(src, dst);
    else if (e.isSymbolicLink()) await fsp.symlink(await fsp.readlink(src), dst);
    else if (e.isFile()) await link(src, dst);
  }
}

export class RustupResolver implements ToolchainResolver {
  readonly kind = KIND;
  /** Per rustc path: its stat signature and what package answered. */
  private readonly packaged = new Map<string, { signature: string; result: PackagedToolchain | undefined }>();

  constructor(private readonly options: RustupResolverOptions) {}

  private env(): NodeJS.ProcessEnv {
    const { rustup_home, dist_server } = this.options.config;
    return {
      ...process.env,
      ...(rustup_home ? { RUSTUP_HOME: rustup_home } : {}),
      ...(dist_server ? { RUSTUP_DIST_SERVER: dist_server } : {}),
    };
  }

  private run(file: string, args: readonly string[], timeoutMs = 60_000): Promise<string> {
    if (path.basename(file) === 'rustup' || file === this.options.config.rustup)
      this.options.onCommand?.([file, ...args]);
    return this.options.exec
      ? this.options.exec(file, args, timeoutMs)
      : defaultExec(file, args, timeoutMs, this.env());
  }

  /**
   * Client side: a rustc inside a rustup toolchain (`<rustup home>/toolchains/<name>/bin/rustc`),
   * named by its version and host. Another compiler, or a rustc outside rustup (a distribution's,
   * which may carry patches a worker's rustup toolchain lacks), resolves undefined.
   */
  async package(compiler: string): Promise<PackagedToolchain | undefined> {
    let real: string;
    let signature: string;
    try {
      real = fs.realpathSync(compiler);
      const st = fs.statSync(real);
      signature = `${st.size}:${st.mtimeMs}:${st.ino}`;
    } catch {
      return undefined;
    }
    const known = this.packaged.get(real);
    if (known?.signature === signature) return known.result;
    const result = await this.name(real);
    this.packaged.set(real, { signature, result });
    return result;
  }

  /** A lookup is as quick as packaging: there is no archive to make. */
  find(compiler: string): Promise<PackagedToolchain | undefined> {
    return this.package(compiler);
  }

  private async name(real: string): Promise<PackagedToolchain | undefined> {
    if (
      path.basename(real) !== 'rustc' ||
      path.basename(path.dirname(path.dirname(path.dirname(real)))) !== 'toolchains'
    )
      return undefined;
    const text = await this.run(real, ['-vV']).catch(() => '');
    const v = parseRustcVersion(text);
    if (!v) return undefined;
    if (!/^[0-9a-f]{40}$/.test(v.commit))
      throw fail(
        real,
        `rustc -vV names no commit hash (${v.commit}): a worker could not find the same build`,
      );
    const version = { release: v.release, commit: v.commit, commit_date: v.commitDate, target: v.host };
    return {
      spec: {
        kind: KIND,
        digest: versionDigest(KIND, version),
        hostTriples: [...this.options.config.hosts],
        targetTriple: v.host,
        compiler: ROOT_RUSTC,
        version,
      },
    };
  }

  /** Rustup toolchains are named by version, never shipped: an archive is refused. */
  async materialise(spec: ToolchainSpec): Promise<MaterialisedToolchain> {
    throw fail(spec.digest, 'rustup toolchains are resolved on the worker by version, not sent as archives');
  }

  /**
   * Worker side: the installed toolchain with the spec's commit for this host (installed first when
   * allowed), with the spec's target, linked into `dest`: /rust (bin/rustc, its libraries, the
   * target's and host's standard library), the system libraries rustc loads, and /usr/bin/env.
   */
  async resolveVersion(spec: ToolchainSpec, dest: string): Promise<MaterialisedToolchain> {
    const version = spec.version;
    const target = version?.target ?? spec.targetTriple;
    if (!version?.commit || !version.release || !target || !/^[0-9a-f]{40}$/.test(version.commit))
      throw fail(spec.digest, 'the spec names no release, commit and target');
    if (versionDigest(KIND, version) !== spec.digest)
      throw fail(spec.digest, 'the digest is not the digest of the version it names');
    if (fs.existsSync(dest)) throw fail(spec.digest, `${dest} exists already`);
    const wanted: RustcVersion = {
      release: version.release,
      commit: version.commit,
      commitDate: version.commit_date ?? 'unknown',
      host: this.options.hostTriple,
    };
    const found = (await this.findInstalled(wanted)) ?? (await this.install(wanted));
    await this.ensureTarget(found, target);
    const tmp = `${dest}.${randomBytes(6).toString('hex')}.partial`;
    try {
      await this.linkRoot(found, target, tmp);
      await fsp.rename(tmp, dest);
    } catch (err) {
      await fsp.rm(tmp, { recursive: true, force: true });
      throw fail(spec.digest, `cannot make its root: ${(err as Error).message}`);
    }
    return { root: dest };
  }

  /** The installed toolchains for this host, with their versions. */
  private async installed(): Promise<Found[]> {
    const { rustup } = this.options.config;
    let list: string;
    try {
      list = await this.run(rustup, ['toolchain', 'list']);
    } catch (err) {
      throw fail('rustup', `${(err as Error).message} (install rustup, or set rustup = "/path/to/rustup")`);
    }
    const out: Found[] = [];
    for (const line of list.split('\n')) {
      const name = line.trim().split(/\s+/)[0];
      if (!name?.endsWith(`-${this.options.hostTriple}`)) continue;
      const rustc = (await this.run(rustup, ['which', 'rustc', '--toolchain', name]).catch(() => '')).trim();
      if (!rustc) continue;
      const v = parseRustcVersion(await this.run(rustc, ['-vV']).catch(() => ''));
      if (v) out.push({ name, sysroot: path.dirname(path.dirname(rustc)), version: v });
    }
    return out;
  }

  private async findInstalled(wanted: RustcVersion): Promise<Found | undefined> {
    const all = await this.installed();
    this.lastSeen = all;
    return all.find((f) => f.version.commit === wanted.commit && f.version.host === wanted.host);
  }

  private lastSeen: Found[] = [];

  private async install(wanted: RustcVersion): Promise<Found> {
    const seen = this.lastSeen.map((f) => `${f.name} (${f.version.commit.slice(0, 9)})`).join(', ') || 'none';
    const candidates = installCandidates(wanted);
    if (!this.options.config.install)
      throw fail(
        `rustc ${wanted.release} (${wanted.commit.slice(0, 9)})`,
        `no installed toolchain has that commit for ${wanted.host} (installed: ${seen}); run rustup toolchain install ${candidates[0] ?? wanted.release} on this worker, or set install = true`,
      );
    const { rustup, install_timeout } = this.options.config;
    const errors: string[] = [];
    for (const name of candidates) {
      const toolchain = `${name}-${wanted.host}`;
      try {
        await this.run(
          rustup,
          ['toolchain', 'install', toolchain, '--profile', 'minimal', '--no-self-update'],
          install_timeout * 1000,
        );
      } catch (err) {
        errors.push((err as Error).message);
        continue;
      }
      const found = (await this.installed()).find((f) => f.name === toolchain);
      if (found?.version.commit === wanted.commit) return found;
      errors.push(`${toolchain} has commit ${found?.version.commit ?? 'unknown'}, not ${wanted.commit}`);
    }
    throw fail(
      `rustc ${wanted.release} (${wanted.commit.slice(0, 9)})`,
      `installing it failed: ${errors.join('; ') || 'no toolchain name is known for that version'}`,
    );
  }

  private async ensureTarget(found: Found, target: string): Promise<void> {
    if (fs.existsSync(path.join(found.sysroot, 'lib', 'rustlib', target, 'lib'))) return;
    if (!this.options.config.install)
      throw fail(
        found.name,
        `its standard library for ${target} is not installed; run rustup target add --toolchain ${found.name} ${target}, or set install = true`,
      );
    const { rustup, install_timeout } = this.options.config;
    try {
      await this.run(rustup, ['target', 'add', '--toolchain', found.name, target], install_timeout * 1000);
    } catch (err) {
      throw fail(found.name, `rustup target add ${target} failed: ${(err as Error).message}`);
    }
  }

  /** What rustc needs to compile a library crate, linked (hard links: no copy of the toolchain). */
  private async linkRoot(found: Found, target: string, root: string): Promise<void> {
    const sys = found.sysroot;
    const rust = path.join(root, 'rust');
    await link(path.join(sys, 'bin', 'rustc'), path.join(rust, 'bin', 'rustc'));
    for (const e of await fsp.readdir(path.join(sys, 'lib'), { withFileTypes: true })) {
      if (e.isFile() && /\.so(\.|$)/.test(e.name))
        await link(path.join(sys, 'lib', e.name), path.join(rust, 'lib', e.name));
    }
    for (const triple of new Set([target, found.version.host])) {
      const lib = path.join(sys, 'lib', 'rustlib', triple, 'lib');
      if (fs.existsSync(lib)) await linkTree(lib, path.join(rust, 'lib', 'rustlib', triple, 'lib'));
    }
    // The system libraries rustc and its own libraries load, at their paths, and env.
    const needed = new Set<string>([ROOT_ENV]);
    for (const elf of [path.join(sys, 'bin', 'rustc'), ROOT_ENV]) {
      const text = await this.run('ldd', [elf]);
      for (const m of text.matchAll(/(?:=>\s*)?(\/\S+)\s+\(0x/g)) {
        if (!m[1]!.startsWith(`${sys}/`)) needed.add(m[1]!);
      }
    }
    for (const file of needed) await link(fs.realpathSync(file), path.join(root, file));
    await fsp.chmod(root, 0o755);
  }
}
