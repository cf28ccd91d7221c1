import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FileDigestCache } from '../src/cache/digest.js';
import { DiskStorage, RECENCY_STEP_MS } from '../src/cache/disk-storage.js';
import { parseDepfile } from '../src/compiler/depfile.js';
import { includedFiles } from '../src/compiler/linemarkers.js';
import { silentLogger } from '../src/log.js';
import { Stats } from '../src/stats/stats.js';

const made: string[] = [];
const tmp = () => {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-unit-'));
  made.push(d);
  return d;
};
afterAll(() => {
  for (const d of made) fs.rmSync(d, { recursive: true, force: true });
});

describe('DiskStorage', () => {
  it('stores, reads and removes entries without leaving temp files', async () => {
    const s = new DiskStorage(tmp(), 1 << 20, silentLogger);
    s.putSync('r', 'ab12', Buffer.from('hello'));
    expect(s.getSync('r', 'ab12')?.toString()).toBe('hello');
    expect(s.getSync('m', 'ab12')).toBeUndefined();
    expect(fs.readdirSync(path.join(s.dir, 'tmp'))).toEqual([]);
    await s.remove('r', 'ab12');
    expect(s.getSync('r', 'ab12')).toBeUndefined();
  });

  it('evicts the least recently used entries (to the hour) down to 90% of the limit', async () => {
    const s = new DiskStorage(tmp(), 10_000, silentLogger);
    for (let i = 0; i < 9; i++) {
      s.putSync('r', `k${i}`, Buffer.alloc(1000));
      const t = new Date(Date.now() - (100 - i) * RECENCY_STEP_MS);
      fs.utimesSync(path.join(s.dir, 'r', `k${i}`.slice(0, 2), `k${i}`), t, t);
    }
    const k2 = path.join(s.dir, 'r', 'k2', 'k2');
    const k2Before = fs.statSync(k2).mtimeMs;
    expect(s.getSync('r', 'k0')).toBeDefined(); // refreshes k0: now the most recent
    // Refreshed within the hour: a hit leaves it alone.
    const recent = new Date(Date.now() - RECENCY_STEP_MS / 2);
    fs.utimesSync(k2, recent, recent);
    expect(s.getSync('r', 'k2')).toBeDefined();
    expect(Math.round(fs.statSync(k2).mtimeMs)).toBe(recent.getTime());
    expect(k2Before).toBeLessThan(recent.getTime());
    s.putSync('r', 'k9', Buffer.alloc(3000));
    await s.evict();
    expect(s.size()).toBeLessThanOrEqual(9000);
    expect(s.getSync('r', 'k0')).toBeDefined();
    expect(s.getSync('r', 'k1')).toBeUndefined();
    expect(s.getSync('r', 'k9')).toBeDefined();
  });

  it('throws on a write it cannot make, leaving nothing behind', () => {
    const dir = tmp();
    const s = new DiskStorage(dir, 1 << 20, silentLogger);
    fs.writeFileSync(path.join(dir, 'r'), 'not a directory');
    expect(() => s.putSync('r', 'ab', Buffer.from('x'))).toThrow();
    expect(fs.readdirSync(path.join(dir, 'tmp'))).toEqual([]);
  });
});

describe('Stats', () => {
  it('adds up across instances sharing one cache dir and survives restarts', () => {
    const dir = tmp();
    const a = new Stats(dir);
    const b = new Stats(dir);
    a.count('requests');
    a.count('misses');
    a.nonCacheable('linking');
    b.count('requests');
    b.count('hitsDirect');
    b.nonCacheable('linking');
    a.flush();
    b.flush();
    const snap = new Stats(dir).snapshot();
    expect(snap).toMatchObject({ requests: 2, misses: 1, hitsDirect: 1, nonCacheable: { linking: 2 } });
    new Stats(dir).zero();
    expect(new Stats(dir).snapshot().requests).toBe(0);
  });

  it('starts afresh from a damaged file', () => {
    const dir = tmp();
    fs.writeFileSync(path.join(dir, 'stats.json'), '{"requests": ');
    expect(new Stats(dir).snapshot().requests).toBe(0);
  });
});

describe('FileDigestCache', () => {
  it('notices a changed file even with the same size', () => {
    const dir = tmp();
    const file = path.join(dir, 'h.h');
    fs.writeFileSync(file, 'aaaa');
    const old = new Date(Date.now() - 60_000);
    fs.utimesSync(file, old, old);
    const cache = new FileDigestCache();
    const first = cache.get(file)!;
    fs.writeFileSync(file, 'bbbb');
    fs.utimesSync(file, old, old); // same size, same mtime: ctime still moves
    expect(cache.get(file)!.digest).not.toBe(first.digest);
    expect(cache.get(path.join(dir, 'missing.h'))).toBeUndefined();
    expect(cache.get(dir)).toBeUndefined();
  });

  it('flags what makes a file unsafe for direct mode', () => {
    const flags = (text: string) => {
      const file = path.join(tmp(), 'f.c');
      fs.writeFileSync(file, text);
      return new FileDigestCache().get(file)!.flags;
    };
    expect(flags('const char *d = __DATE__;').dateTime).toBe(true);
    expect(flags('const char *d = __TIMESTAMP__;')).toMatchObject({ dateTime: false, timestamp: true });
    expect(flags('asm(".incbin \\"x.bin\\"");').asmInclude).toBe(true);
    expect(flags('nop ; .incbin "x"').asmInclude).toBe(true);
    expect(flags('asm(".data\\n.incbin \\"d.bin\\"\\n.text");').asmInclude).toBe(true);
    expect(flags('blob: .incbin "d.bin"').asmInclude).toBe(true);
    expect(flags('\t.include "x.s"\n').asmInclude).toBe(true);
    expect(flags('s.include = 1; #include <x.h>').asmInclude).toBe(false);
    expect(flags('#if __has_include("x.h")\n#endif').hasInclude).toBe(true);
    expect(flags('#pragma GCC dependency "parse.y"').mtimeDependent).toBe(true);
    expect(flags('// c\n#include "pch.h"\n#include <b.h>\n').firstInclude).toBe('pch.h');
    expect(flags('int x;')).toEqual({
      dateTime: false,
      timestamp: false,
      asmInclude: false,
      hasInclude: false,
      mtimeDependent: false,
      firstInclude: undefined,
    });
  });
});

describe('includedFiles', () => {
  it('lists real files from line markers only', () => {
    const cpp = Buffer.from(
      '# 0 "a.c"\n# 0 "<built-in>"\n# 0 "<command-line>"\n# 1 "/src//"\n# 1 "inc/x \\"q\\".h" 1\nint x;\n#pragma once\n# 2 "a.c" 2\n',
    );
    expect(includedFiles(cpp)).toEqual(['a.c', 'inc/x "q".h']);
  });
});

describe('parseDepfile', () => {
  it('reads the first rule, with continuations and escapes, and ignores -MP phony rules', () => {
    const text =
      'obj/a.o: src/a.c /usr/include/stdio.h \\\n inc/with\\ space.h inc/hash\\#.h inc/$$dollar.h\n\ninc/with\\ space.h:\n';
    expect(parseDepfile(text)).toEqual([
      'src/a.c',
      '/usr/include/stdio.h',
      'inc/with space.h',
      'inc/hash#.h',
      'inc/$dollar.h',
    ]);
    expect(parseDepfile('my-target: a.c\n')).toEqual(['a.c']);
    expect(parseDepfile('')).toBeUndefined();
    expect(parseDepfile('no rule here\n')).toBeUndefined();
  });
});
