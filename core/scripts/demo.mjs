#!/usr/bin/env node
// The main job on the embedded default (local disk cache): builds a small C project twice through
// kiln with make, then prints the stats, which show the second pass came from the cache.
// Everything lives in a temp dir with its own daemon, so the demo leaves your real cache alone.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const kiln = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'bin', 'kiln');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-demo-'));
const env = {
  ...process.env,
  KILN_CACHE_DIR: path.join(dir, 'cache'),
  KILN_RUNTIME_DIR: path.join(dir, 'run'),
};
const src = path.join(dir, 'project');
fs.mkdirSync(src);
const names = ['parse', 'eval', 'print', 'util', 'main'];
fs.writeFileSync(
  path.join(src, 'demo.h'),
  `${names
    .filter((n) => n !== 'main')
    .map((n) => `int ${n}(int);`)
    .join('\n')}\n`,
);
for (const n of names) {
  const body =
    n === 'main'
      ? '#include <stdio.h>\n#include "demo.h"\nint main(void) { printf("%d\\n", print(eval(parse(util(1))))); return 0; }\n'
      : `#include "demo.h"\nint ${n}(int x) { return x * 2 + ${n.length}; }\n`;
  fs.writeFileSync(path.join(src, `${n}.c`), body);
}
fs.writeFileSync(
  path.join(src, 'Makefile'),
  `OBJS = ${names.map((n) => `${n}.o`).join(' ')}\ndemo: $(OBJS)\n\t$(CC) $(OBJS) -o demo\n%.o: %.c demo.h\n\t$(CC) -O2 -g -MMD -c $< -o $@\nclean:\n\trm -f *.o *.d demo\n`,
);

const run = (argv, opts = {}) => {
  const r = spawnSync(argv[0], argv.slice(1), { cwd: src, env, stdio: 'inherit', ...opts });
  if (r.status !== 0) {
    console.error(`demo: ${argv.join(' ')} failed`);
    process.exit(1);
  }
};

for (const pass of ['first (cold cache)', 'second (after make clean)']) {
  console.log(`\n== ${pass} build: make -j2 CC="kiln gcc"`);
  run(['make', 'clean'], { stdio: 'ignore' });
  const t = process.hrtime.bigint();
  run(['make', '-j2', `CC=${kiln} gcc`]);
  console.log(`   took ${(Number(process.hrtime.bigint() - t) / 1e6).toFixed(0)} ms`);
}
console.log('\n== ./demo, the program just built, prints:');
run([path.join(src, 'demo')]);
console.log('\n== kiln --show-stats (5 misses in the first build, 5 direct hits in the second)');
run([kiln, '--show-stats']);
run([kiln, '--stop-server'], { stdio: 'ignore' });
fs.rmSync(dir, { recursive: true, force: true });
