import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

type Env = Readonly<Record<string, string | undefined>>;

/**
 * The directory that holds the daemon's socket, log and start-up error file.
 * The native client (native/kiln-client.c) computes the same path: keep them in step.
 */
export function runtimeDir(env: Env): string {
  if (env.KILN_RUNTIME_DIR) return env.KILN_RUNTIME_DIR;
  if (env.XDG_RUNTIME_DIR) return path.join(env.XDG_RUNTIME_DIR, 'kiln');
  // Not os.tmpdir(): TMPDIR differs between shells, and every client must find the same daemon.
  return `/tmp/kiln-${process.getuid?.() ?? 0}`;
}

export const socketPath = (env: Env) => path.join(runtimeDir(env), 'daemon.sock');

/**
 * Why the runtime dir (or the socket in it) must not be trusted, or undefined when it is ours: a
 * directory that is not a symlink, owned by this user, with no group or other permission bits,
 * holding a socket that is ours. A local user who made /tmp/kiln-$UID first would otherwise
 * answer our compiles (and get our environment). Missing paths are fine: we create them. The
 * native client (native/kiln-client.c) applies the same rule: keep them in step.
 */
export function runtimeDirProblem(env: Env): string | undefined {
  const uid = process.geteuid?.();
  if (uid === undefined) return undefined;
  const check = (file: string, kind: 'directory' | 'socket'): string | undefined => {
    const st = fs.lstatSync(file, { throwIfNoEntry: false });
    if (!st) return undefined;
    if (st.isSymbolicLink()) return `${file} is a symlink`;
    if (kind === 'directory' ? !st.isDirectory() : !st.isSocket()) return `${file} is not a ${kind}`;
    if (st.uid !== uid) return `${file} is owned by uid ${st.uid}, not by you (uid ${uid})`;
    if (kind === 'directory' && st.mode & 0o077)
      return `${file} has mode ${(st.mode & 0o777).toString(8).padStart(3, '0')} (it must be 0700)`;
    return undefined;
  };
  return check(runtimeDir(env), 'directory') ?? check(socketPath(env), 'socket');
}
export const daemonErrorPath = (env: Env) => path.join(runtimeDir(env), 'daemon.err');
export const daemonLogPath = (env: Env) => path.join(runtimeDir(env), 'daemon.log');

export function homeDir(env: Env): string {
  return env.HOME || os.homedir();
}

export function defaultCacheDir(env: Env): string {
  const base = env.XDG_CACHE_HOME || path.join(homeDir(env), '.cache');
  return path.join(base, 'kiln');
}

export function defaultConfigPath(env: Env): string {
  const base = env.XDG_CONFIG_HOME || path.join(homeDir(env), '.config');
  return path.join(base, 'kiln', 'config.toml');
}
