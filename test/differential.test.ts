import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KilnSandbox } from './helpers/kiln.js';
import { have } from './helpers/prereq.js';
import { debianSource } from './helpers/sources.js';

const _root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
let zlibSrc: string;

let sb: KilnSandbox;
let dir: string;

beforeAll(() => {
  have('gcc');
  have('make');
  zlibSrc = debianSource('zlib');
  sb = new KilnSandbox();
  dir = path.join(sb.work, 'zlib');
  fs.cpSync(zlibSrc, dir, { recursive: true });
  const conf = sb.run(['./configure', '--static'], { cwd: dir, env: { ...sb.env, CC: 'gcc' } });
  expect(conf.status, conf.stdout + conf.stderr).toBe(0);
}, 120_000);

afterAll(() => sb?.dispose());

/** Builds libz.a from clean and returns every object file by name. */
function build(cflags: string, viaKiln: boolean): Map<string, Buffer> {
  expect(sb.run(['make', 'clean'], { cwd: dir }).status).toBe(0);
  const cc = viaKiln ? `${sb.client} gcc` : 'gcc';
  const r = sb.run(['make', '-j2', 'libz.a', `CC=${cc}`, `CFLAGS=${cflags}`], { cwd: dir });
  expect(r.status, r.stderr).toBe(0);
  const objects = new Map<string, Buffer>();
  for (const f of fs.readdirSync(dir).filter((f) => f.endsWith('.o')))
    objects.set(f, fs.readFileSync(path.join(dir, f)));
  expect(objects.size).toBeGreaterThan(10);
  return objects;
}

function expectIdentical(got: Map<string, Buffer>, want: Map<string, Buffer>): void {
  expect([...got.keys()].sort()).toEqual([...want.keys()].sort());
  const differing = [...want].filter(([name, data]) => !got.get(name)!.equals(data)).map(([name]) => name);
  expect(differing).toEqual([]);
}

describe('zlib, plain vs kiln', () => {
  const cflags = '-O2 -g -D_LARGEFILE64_SOURCE=1';

  it('cold and warm builds are byte-identical to a plain build, and warm is all hits', () => {
    const plain = build(cflags, false);
    sb.kiln(['--zero-stats']);
    expectIdentical(build(cflags, true), plain);
    const cold = sb.stats().stats;
    expect(cold.misses).toBe(plain.size);
    expectIdentical(build(cflags, true), plain);
    const warm = sb.stats().stats;
    expect(warm.hitsDirect - cold.hitsDirect).toBe(plain.size);
    expect(warm.misses).toBe(cold.misses);
  });

  it('after a header edit', () => {
    fs.appendFileSync(
      path.join(dir, 'zutil.h'),
      '\n#define KILN_DIFFERENTIAL_EDIT 1\nextern int kiln_differential_edit;\n',
    );
    const before = sb.stats().stats;
    const plain = build(cflags, false);
    expectIdentical(build(cflags, true), plain);
    const after = sb.stats().stats;
    // Exactly the objects whose sources include zutil.h (as gcc -MM says) miss; the rest hit.
    const including = [...plain.keys()].filter((o) => {
      const r = sb.run(['gcc', '-MM', ...cflags.split(' '), o.replace(/\.o$/, '.c')], { cwd: dir });
      expect(r.status, r.stderr).toBe(0);
      return /(^|\s)zutil\.h(\s|$)/.test(r.stdout);
    }).length;
    expect(including).toBeGreaterThan(0);
    expect(including).toBeLessThan(plain.size);
    expect(after.misses - before.misses).toBe(including);
    expect(after.hitsDirect - before.hitsDirect).toBe(plain.size - including);
  });

  it('after a -D change', () => {
    const changed = `${cflags} -DKILN_DIFFERENTIAL_FLAG=2`;
    const before = sb.stats().stats;
    const plain = build(changed, false);
    expectIdentical(build(changed, true), plain);
    const cold = sb.stats().stats;
    expect(cold.misses - before.misses).toBe(plain.size);
    expectIdentical(build(changed, true), plain);
    expect(sb.stats().stats.hitsDirect - cold.hitsDirect).toBe(plain.size);
  });
});
