/**
 * The shell script that builds a job's root inside its new mount namespace, as root, before the job
 * starts: a small read-only tmpfs holding the toolchain's top-level entries (bound read-only), a
 * private /proc, a /dev of a few devices, and the job's own space bound at its cwd, /tmp and /dev/shm.
 */
import fs from 'node:fs/promises';
import path from 'node:path';

/** Mount points the script makes itself; a toolchain entry of that name is left out. */
const OWN = new Set(['proc', 'dev', 'tmp']);
const DEVICES = ['null', 'zero', 'full', 'random', 'urandom'];

export const quote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;

export interface RootPlan {
  readonly toolchainRoot: string;
  /** An empty directory the root is built on (a mount point in the job's namespace only). */
  readonly newRoot: string;
  /** The job's writable directories on the host, bound at its cwd, /tmp and /dev/shm. */
  readonly cwdDir: string;
  readonly tmpDir: string;
  readonly shmDir: string;
  readonly cwd: string;
}

/**
 * The script, run as `sh -c SCRIPT kiln-setup COMMAND...`: it sets up the root, says "ready" on
 * fd 3, and runs COMMAND without fd 3 (sh stays the namespace's init, so that the job is an
 * ordinary process: pid 1 would ignore its own SIGABRT). Throws when the cwd cannot be made in it.
 */
export async function setupScript(plan: RootPlan): Promise<string> {
  const R = quote(plan.newRoot);
  const top = plan.cwd.split('/')[1]!;
  const lines = [
    'set -e',
    'PATH=/usr/sbin:/usr/bin:/sbin:/bin',
    `mount -t tmpfs -o size=1m,nr_inodes=4096,mode=0755,nosuid,nodev kiln-root ${R}`,
  ];
  for (const e of await fs.readdir(plan.toolchainRoot, { withFileTypes: true })) {
    if (OWN.has(e.name)) continue;
    if (e.name === top)
      throw new Error(`the job's cwd ${plan.cwd} is inside the toolchain's /${top}, which is read-only`);
    const from = quote(path.join(plan.toolchainRoot, e.name));
    const to = quote(path.join(plan.newRoot, e.name));
    if (e.isSymbolicLink()) {
      lines.push(`ln -s ${quote(await fs.readlink(path.join(plan.toolchainRoot, e.name)))} ${to}`);
    } else if (e.isDirectory()) {
      lines.push(`mkdir ${to}`, `mount --bind -o ro,nosuid,nodev ${from} ${to}`);
    } else if (e.isFile()) {
      lines.push(`touch ${to}`, `mount --bind -o ro,nosuid,nodev ${from} ${to}`);
    }
  }
  const cwd = quote(path.join(plan.newRoot, plan.cwd));
  lines.push(
    `mkdir -p ${R}/proc ${R}/dev ${R}/tmp`,
    `mount -t proc -o nosuid,nodev,noexec proc ${R}/proc`,
    `mount -t tmpfs -o size=64k,mode=0755,nosuid,noexec kiln-dev ${R}/dev`,
    ...DEVICES.map((d) => `touch ${R}/dev/${d} && mount --bind /dev/${d} ${R}/dev/${d}`),
    `ln -s /proc/self/fd ${R}/dev/fd`,
    `mkdir ${R}/dev/shm && mount --bind ${quote(plan.shmDir)} ${R}/dev/shm`,
    `mount --bind ${quote(plan.tmpDir)} ${R}/tmp`,
    // After /tmp is bound: a cwd under /tmp is made in the job's own /tmp.
    `mkdir -p ${cwd}`,
    `mount --bind ${quote(plan.cwdDir)} ${cwd}`,
    `mount -o remount,bind,ro,nosuid,noexec ${R}/dev`,
    `mount -o remount,ro ${R}`,
    'echo ready >&3',
    'set +e',
    '"$@" 3>&-',
    // Not `exit $?` on the same line as the command: sh could then exec it as pid 1.
    'status=$?',
    'exit $status',
  );
  return lines.join('\n');
}
