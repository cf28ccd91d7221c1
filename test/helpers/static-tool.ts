/**
 * A toolchain for worker tests that need no compiler: one static program, `/usr/bin/tool`, packed
 * as an `archive` toolchain. `tool cp IN OUT` copies a file, `tool sleep N` sleeps, `tool sparse N
 * OUT` makes an N-byte file that takes no space (a hole).
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

const TOOL = String.raw`
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
int main(int argc, char **argv) {
  if (argc == 4 && !strcmp(argv[1], "cp")) {
    FILE *in = fopen(argv[2], "rb"), *out = fopen(argv[3], "wb");
    if (!in || !out) return 3;
    char buf[4096]; size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0) fwrite(buf, 1, n, out);
    return fclose(out) ? 4 : 0;
  }
  if (argc == 3 && !strcmp(argv[1], "sleep")) { sleep(atoi(argv[2])); return 0; }
  if (argc == 4 && !strcmp(argv[1], "sparse")) {
    FILE *out = fopen(argv[3], "wb");
    return !out || ftruncate(fileno(out), atoll(argv[2])) || fclose(out) ? 5 : 0;
  }
  return 2;
}
`;

export interface ToolArchive {
  readonly archive: Buffer;
  readonly digest: string;
}

/**
 * Builds the tool with `gcc -static` under `dir` and packs it (tar.gz); throws when that fails.
 * A `mark` adds a file holding it, for a second toolchain with another digest.
 */
export function buildToolArchive(dir: string, mark?: string): ToolArchive {
  const root = path.join(dir, 'tool-root');
  fs.mkdirSync(path.join(root, 'usr', 'bin'), { recursive: true });
  if (mark !== undefined) fs.writeFileSync(path.join(root, 'usr', 'bin', 'mark'), mark);
  fs.writeFileSync(path.join(dir, 'tool.c'), TOOL);
  const cc = spawnSync('gcc', [
    '-static',
    '-O2',
    '-o',
    path.join(root, 'usr/bin/tool'),
    path.join(dir, 'tool.c'),
  ]);
  if (cc.status !== 0) throw new Error(`gcc -static failed: ${cc.stderr}`);
  const file = path.join(dir, 'tool.tar.gz');
  const tar = spawnSync('tar', ['-C', root, '-czf', file, 'usr']);
  if (tar.status !== 0) throw new Error(`tar failed: ${tar.stderr}`);
  const archive = fs.readFileSync(file);
  return { archive, digest: createHash('sha256').update(archive).digest('hex') };
}
