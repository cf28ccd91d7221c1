import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

export const MIN_VERSION = [0, 3, 0] as const;

export interface BwrapBinary {
  /** Absolute path of the executable. */
  readonly path: string;
  readonly version: string;
  /** [major, minor, patch] */
  readonly parts: readonly number[];
}

/** Where `bwrap_path` points: itself when it has a slash, else the first match in PATH; undefined if absent. */
export function findExecutable(name: string): string | undefined {
  const candidates = name.includes('/')
    ? [path.resolve(name)]
    : (process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin')
        .split(':')
        .filter(Boolean)
        .map((dir) => path.join(dir, name));
  for (const c of candidates) {
    try {
      fs.accessSync(c, fs.constants.X_OK);
      if (fs.statSync(c).isFile()) return c;
    } catch {}
  }
  return undefined;
}

export function atLeast(parts: readonly number[], min: readonly number[]): boolean {
  for (let i = 0; i < min.length; i++) {
    const a = parts[i] ?? 0;
    const b = min[i] ?? 0;
    if (a !== b) return a > b;
  }
  return true;
}

export function installHint(configured: string): string {
  return `install it (apt install bubblewrap, dnf install bubblewrap) or set bwrap_path in [sandbox_config] (now "${configured}")`;
}

/** Finds bwrap and reads its version; rejects with a message that says how to fix it. */
export async function locateBwrap(configured: string): Promise<BwrapBinary> {
  const file = findExecutable(configured);
  const want = MIN_VERSION.slice(0, 2).join('.');
  if (!file) throw new Error(`bubblewrap ${want}+ not found at ${configured}: ${installHint(configured)}`);
  const out = await new Promise<string>((resolve, reject) => {
    execFile(file, ['--version'], { timeout: 10_000, env: {} }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${file} --version failed: ${(stderr || err.message).trim()}`));
      else resolve(stdout);
    });
  });
  const m = /bubblewrap\s+(\d+)\.(\d+)(?:\.(\d+))?/.exec(out);
  if (!m)
    throw new Error(`${file} does not look like bubblewrap ("${out.trim()}"): ${installHint(configured)}`);
  const parts = [Number(m[1]), Number(m[2]), Number(m[3] ?? 0)];
  const version = parts.join('.');
  if (!atLeast(parts, MIN_VERSION)) {
    throw new Error(
      `bubblewrap ${version} at ${file} is too old, kiln needs ${want}+: ${installHint(configured)}`,
    );
  }
  return { path: file, version, parts };
}
