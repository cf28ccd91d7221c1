import { describe, expect, it } from 'vitest';
import { codegenKey, MIN_SAMPLES, TinyCompiles } from '../src/daemon/tiny-compiles.js';

const KIB = 1024;

describe('codegenKey', () => {
  it('keeps the flags that change compile time and drops paths, macros and dependency options', () => {
    const a = codegenKey('/usr/bin/gcc', 'c', [
      '-c',
      '-O2',
      '-g',
      '-fPIC',
      '-march=x86-64',
      '-std=c11',
      '-Iinc',
      '-DX=1',
      '-MD',
      '-MTa.o',
    ]);
    const b = codegenKey('/usr/bin/gcc', 'c', [
      '-c',
      '-O2',
      '-g',
      '-fPIC',
      '-march=x86-64',
      '-std=c11',
      '-Iother',
      '-DY',
      '-MTb.o',
    ]);
    expect(a).toBe(b);
    expect(codegenKey('/usr/bin/gcc', 'c', ['-O0'])).not.toBe(codegenKey('/usr/bin/gcc', 'c', ['-O2']));
    expect(codegenKey('/usr/bin/gcc', 'c', ['-O2'])).not.toBe(codegenKey('/usr/bin/g++', 'c', ['-O2']));
    expect(codegenKey('/usr/bin/gcc', 'c', ['-O2'])).not.toBe(codegenKey('/usr/bin/gcc', 'c++', ['-O2']));
  });
});

describe('TinyCompiles', () => {
  it('decides nothing before it has learnt from enough jobs', () => {
    const t = new TinyCompiles();
    for (let i = 0; i < MIN_SAMPLES - 1; i++) t.record('k', 100 * KIB, 100, 40);
    expect(t.estimate('k', 1 * KIB)).toBeUndefined();
    t.record('k', 100 * KIB, 100, 40);
    expect(t.estimate('k', 1 * KIB)).toEqual({ compileMs: 1, overheadMs: 40 });
    // Another flag set has no rate yet, whatever the overhead.
    expect(t.estimate('other', 1 * KIB)).toBeUndefined();
  });

  it('scales the learnt rate with the input size: small inputs are tiny, large ones are not', () => {
    const t = new TinyCompiles();
    for (let i = 0; i < MIN_SAMPLES; i++) t.record('k', 400 * KIB, 400, 30); // 1 ms per KiB
    const small = t.estimate('k', 20 * KIB)!;
    const large = t.estimate('k', 300 * KIB)!;
    expect(small.compileMs).toBeCloseTo(20);
    expect(small.compileMs < small.overheadMs).toBe(true);
    expect(large.compileMs).toBeCloseTo(300);
    expect(large.compileMs < large.overheadMs).toBe(false);
  });

  it('follows a changing overhead and rate as a moving average, and ignores nonsense samples', () => {
    const t = new TinyCompiles();
    for (let i = 0; i < MIN_SAMPLES; i++) t.record('k', 100 * KIB, 100, 10);
    for (let i = 0; i < 30; i++) t.record('k', 100 * KIB, 300, 80);
    const e = t.estimate('k', 100 * KIB)!;
    expect(e.overheadMs).toBeGreaterThan(75);
    expect(e.compileMs).toBeGreaterThan(290);
    t.record('k', 0, 5, 5);
    t.record('k', 100 * KIB, -1, 5);
    t.record('k', 100 * KIB, Number.NaN, 5);
    expect(t.estimate('k', 100 * KIB)).toEqual(e);
  });

  it('forgets the least recently used flag set past its bound', () => {
    const t = new TinyCompiles();
    for (let i = 0; i < MIN_SAMPLES; i++) t.record('first', KIB, 1, 1);
    for (let k = 0; k < 1000; k++) t.record(`k${k}`, KIB, 1, 1);
    expect(t.estimate('first', KIB)).toBeUndefined();
    for (let i = 0; i < MIN_SAMPLES; i++) t.record('k999', KIB, 1, 1);
    expect(t.estimate('k999', KIB)).toBeDefined();
  });
});
