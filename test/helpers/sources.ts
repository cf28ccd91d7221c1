import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/**
 * A Debian source package unpacked under bench/.work/src. The tests never fetch it themselves:
 * fetching may add a deb-src entry to apt's sources, which only `.ci/run` (or the user) should do.
 */
export function debianSource(pkg: string): string {
  const dir = path.join(root, 'bench', '.work', 'src', pkg);
  if (!fs.existsSync(dir))
    throw new Error(
      `${pkg}'s Debian source is not in bench/.work/src: run \`bash bench/fetch-sources.sh ${pkg}\` once ` +
        "(as root: it adds a deb-src entry to apt's sources when there is none), as .ci/run does",
    );
  return dir;
}
