/**
 * base_dir's accounting: why an entry was kept to its directory, counted by reason in
 * --show-stats (text and JSON). That the entries shared are right is the differential suite's
 * job (differential-base-dir.test.ts).
 */
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { KilnSandbox } from './helpers/kiln.js';
import { have } from './helpers/prereq.js';

let sb: KilnSandbox | undefined;
afterEach(() => {
  sb?.dispose();
  sb = undefined;
});

describe('base_dir', () => {
  it.skipIf(!have('gcc'))('counts why entries were not shared; a shared one counts nothing', () => {
    sb = new KilnSandbox();
    sb.env.KILN_BASE_DIR = sb.work;
    for (const co of ['co1', 'co2']) {
      sb.file(`${co}/src/a.c`, 'int f(int v) { return v * 3; }\n');
      sb.file(`${co}/src/w.c`, 'int w(void) { int unused; return 1; }\n');
      sb.file(`${co}/build/.keep`, '');
    }
    const cc = (co: string, ...args: string[]) => {
      const r = sb!.kiln(
        [
          'gcc',
          ...args,
          '-c',
          path.join(sb!.work, co, 'src', args.includes('-Wall') ? 'w.c' : 'a.c'),
          '-o',
          'x.o',
        ],
        {
          cwd: path.join(sb!.work, co, 'build'),
          env: { ...sb!.env, PWD: path.join(sb!.work, co, 'build') },
        },
      );
      expect(r.status, r.stderr).toBe(0);
      return r;
    };
    cc('co1');
    cc('co2'); // shared: a hit
    cc('co1', '-g');
    cc('co2', '-g');
    cc('co1', '-fsanitize=address');
    expect(cc('co1', '-Wall').stderr).toContain(`${sb.work}/co1/src/w.c`);
    cc('co2', '-Wall');
    cc('co2', '-Wall'); // pinned to co2 now: a hit
    const outside = sb.kiln(['gcc', '-c', path.join(sb.work, 'co1', 'src', 'a.c'), '-o', 'x.o'], {
      cwd: sb.dir,
      env: { ...sb.env, PWD: sb.dir },
    });
    expect(outside.status, outside.stderr).toBe(0);
    const s = sb.stats().stats as {
      baseDir: Record<string, number>;
      misses: number;
      hitsPreprocessed: number;
      hitsDirect: number;
    };
    expect(s.baseDir).toEqual({
      '-g without a prefix map for the working directory': 2,
      '-fsanitize (the output names source paths)': 1,
      'the output names its directory': 2,
      'working directory outside base_dir': 1,
    });
    expect([s.misses, s.hitsPreprocessed, s.hitsDirect]).toEqual([7, 1, 1]);
    const text = sb.kiln(['--show-stats']).stdout;
    expect(text).toMatch(/^base_dir: entries not shared +6$/m);
    expect(text).toMatch(/^ {2}-g without a prefix map for the working directory +2$/m);
    expect(text).toMatch(/^ {2}the output names its directory +2$/m);
  });
});
