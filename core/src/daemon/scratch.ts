/**
 * The daemon's own temporary files (depfiles it asks the compiler for), in the temp dir. Their
 * names carry the daemon's pid, so that a daemon can remove what a killed one left behind.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const SCRATCH = /^kiln-(cpp|deps|rust)-(\d+)-[0-9a-f]{12}\.d$/;

/** A fresh path for a temporary file of `kind`, named after this process. */
export function scratchFile(kind: 'cpp' | 'deps' | 'rust'): string {
  return path.join(os.tmpdir(), `kiln-${kind}-${process.pid}-${randomBytes(6).toString('hex')}.d`);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Removes this user's scratch files whose daemon is gone. Never throws. */
export function removeDeadScratch(): void {
  const dir = os.tmpdir();
  const uid = process.getuid?.();
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return;
  }
  for (const name of names) {
    const m = SCRATCH.exec(name);
    if (!m || alive(Number(m[2]))) continue;
    const file = path.join(dir, name);
    try {
      const st = fs.lstatSync(file);
      if (st.isFile() && (uid === undefined || st.uid === uid)) fs.unlinkSync(file);
    } catch {}
  }
}
