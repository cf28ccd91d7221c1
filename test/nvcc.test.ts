/**
 * Real nvcc (CUDA 13 here) through kiln: the whole `nvcc -c` call cached and replayed, with a miss
 * for every change that must cause one, including a header only the device pass includes.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KilnSandbox } from './helpers/kiln.js';
import { have } from './helpers/prereq.js';

const haveNvcc = have('nvcc');

describe.skipIf(!haveNvcc)('nvcc through kiln', () => {
  let sb: KilnSandbox;
  const cuda = () => sb.languageStats('CUDA');
  /** Compiles through kiln, returns what the CUDA counters did and the run. */
  const nvcc = (args: string[]) => {
    const before = cuda();
    const run = sb.kiln(['nvcc', ...args]);
    const after = cuda();
    return { run, hit: after.hits - before.hits, miss: after.misses - before.misses };
  };

  beforeAll(() => {
    sb = new KilnSandbox('native');
    sb.file(
      'k.cu',
      [
        '#ifdef __CUDA_ARCH__',
        '#include "dev.h"',
        '#endif',
        '#include "host.h"',
        '__global__ void add(int *a, int n) {',
        '#ifdef __CUDA_ARCH__',
        '  int i = threadIdx.x; if (i < n) a[i] += DEV;',
        '#endif',
        '}',
        'int launch(int *d, int n) { add<<<1, n>>>(d, n); return HOST + (int)cudaDeviceSynchronize(); }',
        '',
      ].join('\n'),
    );
    sb.file('dev.h', '#define DEV 3\n');
    sb.file('host.h', '#define HOST 5\n');
  });
  afterAll(() => sb?.dispose());

  it('caches a .cu compile and replays the same object', () => {
    const cold = nvcc(['-c', 'k.cu', '-o', 'k.o']);
    expect(cold.run.status, cold.run.stderr).toBe(0);
    expect(cold.miss).toBe(1);
    const first = sb.read('k.o');
    fs.rmSync(path.join(sb.work, 'k.o'));
    const warm = nvcc(['-c', 'k.cu', '-o', 'k.o']);
    expect(warm.hit).toBe(1);
    expect(sb.read('k.o').equals(first)).toBe(true);
    // A real CUDA object: the kernel's host stub and the launcher are there.
    const nm = spawnSync('nm', ['-C', path.join(sb.work, 'k.o')], { encoding: 'utf8' }).stdout;
    expect(nm).toMatch(/launch\(int\*, int\)/);
    expect(nm).toMatch(/add\(int\*, int\)/);
  });

  it('misses when a header that only the device pass includes changes, and hits when it is back', () => {
    sb.file('dev.h', '#define DEV 4\n');
    expect(nvcc(['-c', 'k.cu', '-o', 'k.o']).miss).toBe(1);
    sb.file('dev.h', '#define DEV 3\n');
    expect(nvcc(['-c', 'k.cu', '-o', 'k.o']).hit).toBe(1);
  });

  it.each([
    [['-arch=sm_80']],
    [['-gencode', 'arch=compute_75,code=sm_75']],
    [['-ccbin', 'g++']],
    [['-Xcompiler', '-fPIC']],
    [['-DEXTRA=1']],
  ])('misses when %j is added', (extra) => {
    const r = nvcc(['-c', 'k.cu', '-o', 'k.o', ...extra]);
    expect(r.run.status, r.run.stderr).toBe(0);
    expect(r.miss).toBe(1);
  });

  it('keys the host compiler: same -ccbin directory, a different gcc in it, a miss', () => {
    const gcc = sb.file('host/gcc', '#!/bin/sh\nexec /usr/bin/gcc "$@"\n');
    fs.chmodSync(gcc, 0o755);
    const args = ['-c', 'k.cu', '-o', 'k.o', '-ccbin', 'host'];
    expect(nvcc(args).miss).toBe(1);
    expect(nvcc(args).hit).toBe(1);
    sb.file('host/gcc', '#!/bin/sh\n# another host compiler\nexec /usr/bin/gcc "$@"\n');
    expect(nvcc(args).miss).toBe(1);
  });

  it('writes the -MD -MF depfile on a hit too', () => {
    expect(nvcc(['-c', 'k.cu', '-o', 'k.o', '-MD', '-MF', 'k.d']).miss).toBe(1);
    fs.rmSync(path.join(sb.work, 'k.d'));
    expect(nvcc(['-c', 'k.cu', '-o', 'k.o', '-MD', '-MF', 'k.d']).hit).toBe(1);
    const dep = sb.read('k.d').toString();
    expect(dep).toMatch(/dev\.h/);
    expect(dep).toMatch(/host\.h/);
  });

  it('runs other nvcc modes unchanged and returns compile errors as they are', () => {
    const m = nvcc(['-M', 'k.cu']);
    expect(m.run.status).toBe(0);
    expect(m.run.stdout).toMatch(/host\.h/);
    expect(sb.stats().stats.nonCacheable['nvcc -M']).toBe(1);
    sb.file('bad.cu', '__global__ void f() { undefined_thing(); }\n');
    const before = cuda().failed;
    const bad = nvcc(['-c', 'bad.cu', '-o', 'bad.o']);
    expect(bad.run.status).not.toBe(0);
    expect(bad.run.stderr).toMatch(/undefined_thing/);
    expect(cuda().failed).toBe(before + 1);
  });
});
