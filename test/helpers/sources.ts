import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** A Debian source package unpacked under bench/.work/src, fetched the first time it is needed. */
export function debianSource(pkg: string): string {
  const dir = path.join(root, 'bench', '.work', 'src', pkg);
  if (!fs.existsSync(dir)) {
    const r = spawnSync('bash', [path.join(root, 'bench', 'fetch-sources.sh'), pkg], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`cannot fetch ${pkg}'s Debian source: ${r.stderr}`);
  }
  return dir;
}
