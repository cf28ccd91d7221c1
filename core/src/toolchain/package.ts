/**
 * Packs a local gcc or clang into an archive a worker can run in a jail whose root is only that
 * archive (icecc-create-env's job): the driver, its helper programs, assembler and linker, and
 * every shared library they load, at the same paths as on this machine.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import type { ToolchainSpec } from '@kiln/plugins';
import { readElf } from '@kiln/plugins';
import { findExecutable } from '../client/find-executable.js';
import { detectFamily, looksLikeCCompiler } from '../compiler/detect.js';
import type { Family } from '../compiler/gcc-args.js';
import {
  KILN_ERR_TOOLCHAIN_NOT_FOUND,
  KILN_ERR_TOOLCHAIN_PACKAGE,
  KILN_ERR_TOOLCHAIN_UNSUPPORTED,
  KilnError,
} from '../errors.js';
import { type TarEntry, writeDeterministicTar } from './deterministic-tar.js';

const run = promisify(execFile);
const MAX_HOPS = 40;
const GCC_HELPERS = ['cc1', 'cc1plus', 'collect2', 'lto1', 'lto-wrapper'];
const BINUTILS = ['as', 'objcopy', 'ld'];
const LOADER_FILES = ['/etc/ld.so.conf', '/etc/ld.so.conf.d', '/etc/ld.so.cache'];

const isMissing = (err: unknown) => ['ENOENT', 'ENOTDIR'].includes((err as NodeJS.ErrnoException).code ?? '');

/** The files of a toolchain as archive entries, keyed by their path relative to `/`. */
class Tree {
  readonly entries = new Map<string, TarEntry>();
  private readonly done = new Set<string>();

  /**
   * Adds `abs` and every directory and symlink on the way to it, following each symlink hop so
   * the path resolves inside the archive exactly as it does here (merged /usr: /lib → usr/lib).
   * `recurse` adds a directory's whole content. Rejects when `abs` does not exist.
   */
  async add(abs: string, recurse = false, hops = 0): Promise<void> {
    const key = `${recurse}:${abs}`;
    if (this.done.has(key)) return;
    if (hops > MAX_HOPS) throw new Error(`too many levels of symbolic links at ${abs}`);
    const parts = abs.split('/').filter(Boolean);
    for (let i = 0; i < parts.length; i++) {
      if (parts[i] === '..' || parts[i] === '.') {
        // Every directory before it is a real one (a link would have been followed above), so the
        // kernel's ".." is the lexical one: keep ".." out of the archive, where it is refused.
        const rest = [...parts.slice(0, parts[i] === '..' ? Math.max(0, i - 1) : i), ...parts.slice(i + 1)];
        this.done.add(key);
        return this.add(`/${rest.join('/')}`, recurse, hops);
      }
      const rel = parts.slice(0, i + 1).join('/');
      const host = `/${rel}`;
      const st = await fs.lstat(host);
      if (st.isSymbolicLink()) {
        // Absolute or over-the-top targets become relative ones that stay inside the root.
        const resolved = path.resolve(path.dirname(host), await fs.readlink(host));
        this.entries.set(rel, {
          type: 'symlink',
          target: path.relative(path.dirname(host), resolved) || '.',
        });
        this.done.add(key);
        return this.add(path.join(resolved, ...parts.slice(i + 1)), recurse, hops + 1);
      }
      const last = i === parts.length - 1;
      if (st.isDirectory()) {
        this.entries.set(rel, { type: 'dir' });
        if (last && recurse) {
          for (const child of (await fs.readdir(host)).sort()) {
            // A dangling link inside a tree is kept as a link; the tree stays usable without its target.
            await this.add(`${host}/${child}`, true, hops).catch((err) => {
              if (!isMissing(err)) throw err;
            });
          }
        }
      } else if (st.isFile() && last) {
        this.entries.set(rel, {
          type: 'file',
          source: host,
          size: st.size,
          executable: (st.mode & 0o111) !== 0,
        });
      } else if (!st.isFile()) {
        throw new Error(`${host} is neither a file, a directory nor a symlink`);
      }
    }
    this.done.add(key);
  }

  async addIfExists(abs: string | undefined, recurse = false): Promise<void> {
    if (!abs || !path.isAbsolute(abs)) return;
    await this.add(abs, recurse).catch((err) => {
      if (!isMissing(err)) throw err;
    });
  }

  files(): string[] {
    return [...this.entries.values()].flatMap((e) => (e.type === 'file' ? [e.source] : []));
  }
}

async function ask(compiler: string, ...args: string[]): Promise<string> {
  const { stdout } = await run(compiler, args, { env: { ...process.env, LC_ALL: 'C' }, timeout: 30_000 });
  return stdout.trim();
}

/** Where the driver would find `name`: its own program dirs, else PATH (a bare answer means PATH). */
async function progName(compiler: string, name: string): Promise<string | undefined> {
  const answer = await ask(compiler, `-print-prog-name=${name}`).catch(() => '');
  if (path.isAbsolute(answer)) return answer;
  return findExecutable(answer || name, process.env.PATH, process.cwd(), new Set());
}

/** The shared libraries and loader `elf` needs, from ldd (which already lists transitive ones). */
async function sharedLibraries(elf: string): Promise<string[]> {
  let out: string;
  try {
    out = (await run('ldd', [elf], { env: { ...process.env, LC_ALL: 'C' }, timeout: 30_000 })).stdout;
  } catch (err) {
    const stdout = String((err as { stdout?: string }).stdout ?? '');
    // ldd fails on a static binary; that needs nothing, anything else is a real failure.
    if (/not a dynamic executable|statically linked/.test(`${stdout}${(err as { stderr?: string }).stderr}`))
      return [];
    throw new Error(`ldd ${elf}: ${(err as Error).message}`);
  }
  const libs: string[] = [];
  for (const line of out.split('\n')) {
    const missing = /^\s*(\S+) => not found/.exec(line);
    if (missing) throw new Error(`${elf} needs ${missing[1]}, which is not installed`);
    const m = /(?:=>\s*)?(\/\S+) \(0x[0-9a-f]+\)/.exec(line);
    if (m?.[1]) libs.push(m[1]);
  }
  return libs;
}

/** The driver for the other language beside `compiler` (gcc ↔ g++, clang ↔ clang++), like icecc. */
function sibling(compiler: string): string | undefined {
  const swaps: Record<string, string> = { gcc: 'g++', 'g++': 'gcc', clang: 'clang++', 'clang++': 'clang' };
  Object.assign(swaps, { cc: 'c++', 'c++': 'cc' });
  const m = /(gcc|g\+\+|clang\+\+|clang|c\+\+|cc)(-[0-9.]+)?$/.exec(path.basename(compiler));
  if (!m?.[1]) return undefined;
  const name = `${path.basename(compiler).slice(0, m.index)}${swaps[m[1]]}${m[2] ?? ''}`;
  return path.join(path.dirname(compiler), name);
}

/**
 * Every name in `called`'s directory for the binary it runs (cc, gcc, gcc-12… for one gcc; clang
 * and clang++ for one clang), sorted: one package serves them all, and a worker runs the compiler
 * by the name it was called by, so a driver that reads its argv[0] (clang++) behaves as here.
 */
export async function aliases(called: string): Promise<string[]> {
  const real = await fs.realpath(called);
  const dir = path.dirname(called);
  const names = new Set([called]);
  for (const name of (await fs.readdir(dir)).sort()) {
    const p = path.join(dir, name);
    const st = await fs.lstat(p).catch(() => undefined);
    if (!st?.isSymbolicLink()) continue;
    if ((await fs.realpath(p).catch(() => undefined)) === real) names.add(p);
  }
  return [...names].sort();
}

async function collect(tree: Tree, compiler: string, family: Family): Promise<void> {
  for (const name of await aliases(compiler)) {
    await tree.add(name);
    await tree.addIfExists(sibling(name));
  }
  for (const tool of BINUTILS) await tree.addIfExists(await progName(compiler, tool));
  if (family === 'gcc') {
    let libexec: string | undefined;
    for (const helper of GCC_HELPERS) {
      const p = await ask(compiler, `-print-prog-name=${helper}`).catch(() => '');
      if (!path.isAbsolute(p)) continue;
      if (helper === 'cc1') libexec = path.dirname(p);
      await tree.addIfExists(p);
    }
    const plugin = await ask(compiler, '-print-file-name=liblto_plugin.so');
    await tree.addIfExists(
      path.isAbsolute(plugin) ? plugin : libexec && path.join(libexec, 'liblto_plugin.so'),
    );
    await tree.addIfExists(await ask(compiler, '-print-file-name=specs'));
  } else {
    await tree.addIfExists(path.join(await ask(compiler, '-print-resource-dir'), 'include'), true);
  }
  for (const file of LOADER_FILES) await tree.addIfExists(file, true);
  const elves = [];
  for (const file of tree.files()) if (await readElf(file).catch(() => undefined)) elves.push(file);
  const libs = await Promise.all(elves.map(sharedLibraries));
  for (const lib of new Set(libs.flat())) await tree.add(lib);
}

/**
 * Packs the gcc or clang at `compiler` (a path, or a name looked up on PATH) into a deterministic
 * gzip'd tar at `outFile` (written through a temporary file and a rename). Rejects with
 * KILN_ERR_TOOLCHAIN_NOT_FOUND, KILN_ERR_TOOLCHAIN_UNSUPPORTED (not gcc/clang, not Linux, not
 * ELF) or KILN_ERR_TOOLCHAIN_PACKAGE (a file could not be read, a library is missing).
 */
export async function packageToolchain(compiler: string, outFile: string): Promise<ToolchainSpec> {
  const called = findExecutable(compiler, process.env.PATH, process.cwd(), new Set());
  if (!called) throw KILN_ERR_TOOLCHAIN_NOT_FOUND(compiler);
  if (process.platform !== 'linux') throw KILN_ERR_TOOLCHAIN_UNSUPPORTED(called, 'only Linux compilers');
  const real = await fs.realpath(called);
  const elf = await readElf(real);
  if (!elf) throw KILN_ERR_TOOLCHAIN_UNSUPPORTED(called, `${real} is not an ELF executable`);
  // Asking an arbitrary program for --version could do anything; the name must look right first.
  if (!looksLikeCCompiler(called, real)) throw KILN_ERR_TOOLCHAIN_UNSUPPORTED(called, 'not gcc or clang');
  const banner = await ask(called, '--version').catch(() => '');
  const family = detectFamily(called, real, banner);
  if (!family) throw KILN_ERR_TOOLCHAIN_UNSUPPORTED(called, 'not gcc or clang');

  const tmp = `${outFile}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    const tree = new Tree();
    await collect(tree, called, family);
    const target = await ask(called, family === 'gcc' ? '-dumpmachine' : '-print-target-triple');
    await fs.mkdir(path.dirname(path.resolve(outFile)), { recursive: true });
    const { digest } = await writeDeterministicTar(tree.entries, tmp);
    await fs.rename(tmp, outFile);
    return { kind: 'archive', digest, hostTriples: [elf.triple], targetTriple: target, compiler: called };
  } catch (err) {
    await fs.rm(tmp, { force: true });
    if (err instanceof KilnError) throw err;
    throw KILN_ERR_TOOLCHAIN_PACKAGE(called, (err as Error).message);
  }
}
