import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

/** Copies `p` (and every symlink on the way to its target) into `root` at the same absolute path. */
function copyInto(root: string, p: string, seen: Set<string>): void {
  const abs = path.join(fs.realpathSync(path.dirname(p)), path.basename(p));
  if (seen.has(abs)) return;
  seen.add(abs);
  const dest = path.join(root, abs);
  fs.mkdirSync(path.dirname(dest), { recursive: true });
  const st = fs.lstatSync(abs);
  if (st.isSymbolicLink()) {
    const target = fs.readlinkSync(abs);
    fs.symlinkSync(target, dest);
    copyInto(root, path.resolve(path.dirname(abs), target), seen);
  } else {
    fs.copyFileSync(abs, dest);
    fs.chmodSync(dest, st.mode & 0o777);
  }
}

/** Development stand-in for the real toolchain packager: gcc, cc1, as and their shared libraries. */
export function throwawayGccRoot(root: string): { root: string; compiler: string } {
  const which = (name: string) =>
    execFileSync('sh', ['-c', `command -v ${name}`])
      .toString()
      .trim();
  const bins = [
    which('gcc'),
    execFileSync('gcc', ['-print-prog-name=cc1']).toString().trim(),
    which(execFileSync('gcc', ['-print-prog-name=as']).toString().trim()),
  ];
  const seen = new Set<string>();
  for (const bin of bins) {
    copyInto(root, bin, seen);
    const ldd = execFileSync('ldd', [fs.realpathSync(bin)]).toString();
    for (const m of ldd.matchAll(/(\/\S+) \(0x/g)) copyInto(root, m[1]!, seen);
  }
  for (const link of ['bin', 'lib', 'lib64', 'sbin']) {
    const target = fs.readlinkSync(`/${link}`);
    fs.symlinkSync(target, path.join(root, link));
  }
  return { root, compiler: which('gcc') };
}
