import fs from 'node:fs/promises';
import path from 'node:path';

/**
 * Whether a process with `uid`/`gid` can look up `p`: every directory from / down to `p` grants it
 * search permission. bwrap started as that uid needs this to bind `p`. Supplementary groups are
 * ignored: the process that would use them starts with none.
 */
export async function searchableBy(p: string, uid: number, gid: number): Promise<boolean> {
  let real: string;
  try {
    real = await fs.realpath(p);
  } catch {
    return false;
  }
  const parts = real.split('/').filter(Boolean);
  for (let i = 0; i <= parts.length; i++) {
    const dir = `/${parts.slice(0, i).join('/')}`;
    const st = await fs.stat(dir).catch(() => undefined);
    if (!st) return false;
    const bit = st.uid === uid ? 0o100 : st.gid === gid ? 0o010 : 0o001;
    if (!(st.mode & bit)) return false;
  }
  return path.isAbsolute(real);
}
