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
