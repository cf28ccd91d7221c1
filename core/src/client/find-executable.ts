import fs from 'node:fs';
import path from 'node:path';

export function realpathOrUndefined(file: string): string | undefined {
  try {
    // One realpath(3) call rather than an lstat per path component.
    return fs.realpathSync.native(file);
  } catch {
    return undefined;
  }
}

/**
 * A regular file we may execute. A missing one costs one stat and no exception (PATH lookups miss
 * a lot); any other error (a PATH entry that is a file, a directory we cannot search) is a no.
 */
function isExecutableFile(file: string): boolean {
  try {
    const st = fs.statSync(file, { throwIfNoEntry: false });
    if (!st?.isFile()) return false;
    fs.accessSync(file, fs.constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * Finds the program `name` the way execvp would, skipping every candidate that resolves to one of
 * `skip` (kiln itself, reached through a masquerade symlink such as /usr/local/lib/kiln/gcc).
 * A name with a slash is used as given unless it is kiln itself, in which case its basename is
 * looked up. Returns undefined when nothing matches.
 */
export function findExecutable(
  name: string,
  pathEnv: string | undefined,
  cwd: string,
  skip: ReadonlySet<string>,
): string | undefined {
  const isKiln = (file: string) => {
    if (skip.size === 0) return false;
    const real = realpathOrUndefined(file);
    return real !== undefined && skip.has(real);
  };
  if (name.includes('/')) {
    const file = path.resolve(cwd, name);
    if (!isKiln(file)) return isExecutableFile(file) ? file : undefined;
    name = path.basename(name);
  }
  for (const dir of (pathEnv ?? '/usr/local/bin:/usr/bin:/bin').split(':')) {
    const file = path.resolve(cwd, dir || '.', name);
    if (isExecutableFile(file) && !isKiln(file)) return file;
  }
  return undefined;
}

/** The real paths a client may run as: the native client and the Node CLI. */
export function kilnSelfPaths(...paths: string[]): Set<string> {
  const out = new Set<string>();
  for (const p of paths) {
    const real = realpathOrUndefined(p);
    if (real) out.add(real);
  }
  return out;
}
