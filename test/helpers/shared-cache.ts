/**
 * Building blocks for shared-cache tests: a small C project, building it through a kiln daemon,
 * the plain compiler's objects to compare with, and the per-tier counters of `--show-stats`.
 * Two KilnSandbox daemons with separate cache dirs share results only through the remote tier.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { expect } from 'vitest';
import { emptyTierCounts, type TierCounts } from '../../core/dist/stats/stats.js';
import type { KilnSandbox } from './kiln.js';

export type { TierCounts };

export const SOURCES = ['alpha', 'beta', 'gamma', 'delta'];

/** Writes the project into `dir` (absolute): one header, SOURCES.length sources. */
export function writeProject(dir: string, salt = ''): void {
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'common.h'), `#define SALT "${salt}"\nint shared(int);\n`);
  for (const [i, name] of SOURCES.entries()) {
    fs.writeFileSync(
      path.join(dir, `${name}.c`),
      `#include "common.h"\nconst char *${name}_salt = SALT;\nint ${name}(int x) { return shared(x) * ${i + 3} + ${i}; }\n`,
    );
  }
}

const args = (name: string) => ['gcc', '-O2', '-c', `${name}.c`, '-o', `${name}.o`];

/** Compiles every source through kiln in `dir`; each call must succeed. Returns the objects. */
export function buildThroughKiln(sb: KilnSandbox, dir: string): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  for (const name of SOURCES) {
    fs.rmSync(path.join(dir, `${name}.o`), { force: true });
    const r = sb.kiln(args(name), { cwd: dir });
    expect(r.status, r.stderr).toBe(0);
    out.set(name, fs.readFileSync(path.join(dir, `${name}.o`)));
  }
  return out;
}

/** The plain compiler's objects for the project in `dir`, built in a copy (same path layout). */
export function plainObjects(dir: string): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  for (const name of SOURCES) {
    const obj = path.join(dir, `${name}.plain.o`);
    const r = spawnSync('gcc', ['-O2', '-c', `${name}.c`, '-o', obj], { cwd: dir, encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    out.set(name, fs.readFileSync(obj));
    fs.rmSync(obj);
  }
  return out;
}

export function expectSameObjects(got: Map<string, Buffer>, want: Map<string, Buffer>): void {
  expect([...got.keys()].sort()).toEqual([...want.keys()].sort());
  for (const [name, data] of want) expect(got.get(name)?.equals(data), `${name}.o differs`).toBe(true);
}

/** The counters of the one remote tier whose label contains `match` (zeros before any use). */
export function tierCounts(sb: KilnSandbox, match: string): TierCounts {
  const stats = sb.stats() as unknown as { stats: { tiers?: Record<string, TierCounts> } };
  const found = Object.entries(stats.stats.tiers ?? {}).filter(([label]) => label.includes(match));
  if (found.length > 1) throw new Error(`several tiers match ${match}: ${found.map(([l]) => l).join(', ')}`);
  return { ...emptyTierCounts(), ...found[0]?.[1] };
}

/** Results and manifests in a daemon's local cache dir. */
export function localEntries(sb: KilnSandbox): number {
  let n = 0;
  for (const kind of ['r', 'm']) {
    const dir = path.join(sb.cacheDir, kind);
    if (!fs.existsSync(dir)) continue;
    for (const bucket of fs.readdirSync(dir)) n += fs.readdirSync(path.join(dir, bucket)).length;
  }
  return n;
}

/** Waits until the tier's counters satisfy `done` (background writes finish after the compile). */
export async function waitForTier(
  sb: KilnSandbox,
  match: string,
  done: (c: TierCounts) => boolean,
  ms = 20_000,
): Promise<TierCounts> {
  const end = Date.now() + ms;
  let c = tierCounts(sb, match);
  while (!done(c) && Date.now() < end) {
    await new Promise((r) => setTimeout(r, 100));
    c = tierCounts(sb, match);
  }
  return c;
}

/**
 * Daemon `a` builds the project in `proj` from cold (every object a miss, each as the plain
 * compiler makes it) and writes every entry of its local cache to the tier `match`, with no
 * failure on the way. Returns how many entries it wrote.
 */
export async function fillTier(
  a: KilnSandbox,
  proj: string,
  want: Map<string, Buffer>,
  match: string,
): Promise<number> {
  expectSameObjects(buildThroughKiln(a, proj), want);
  expect(a.stats().stats.misses).toBe(SOURCES.length);
  const entries = localEntries(a);
  const tier = await waitForTier(a, match, (c) => c.writes === entries);
  expect(tier).toMatchObject({ writes: entries, errors: 0, timeouts: 0, dropped: 0, hits: 0 });
  return entries;
}

/**
 * Daemon `a` builds the project in `proj` from cold while its tier's server is killed before the
 * third compile: every object is still as the plain compiler makes it (`want`), every compile was
 * a miss, and tier `match` counted errors.
 */
export async function buildKillingTier(
  a: KilnSandbox,
  proj: string,
  want: Map<string, Buffer>,
  match: string,
  kill: () => unknown,
): Promise<void> {
  const got = new Map<string, Buffer>();
  for (const [i, name] of SOURCES.entries()) {
    if (i === 2) await kill();
    const r = a.kiln(args(name), { cwd: proj });
    expect(r.status, r.stderr).toBe(0);
    got.set(name, fs.readFileSync(path.join(proj, `${name}.o`)));
  }
  expectSameObjects(got, want);
  const c = await waitForTier(a, match, (x) => x.errors > 0);
  expect(c.errors).toBeGreaterThan(0);
  expect(a.stats().stats.misses).toBe(SOURCES.length);
}

/**
 * Daemon `b`, with an empty local cache, builds the project in `proj` from tier `match` alone:
 * every object as the plain compiler makes it (`want`), every compile a hit, two tier hits per
 * object (its manifest and its result) and nothing written there. Returns the tier's counts.
 */
export function buildFromTier(
  b: KilnSandbox,
  proj: string,
  want: Map<string, Buffer>,
  match: string,
): TierCounts {
  expectSameObjects(buildThroughKiln(b, proj), want);
  const stats = b.stats().stats;
  expect(stats.hitsDirect + stats.hitsPreprocessed).toBe(SOURCES.length);
  expect(stats.misses).toBe(0);
  const tier = tierCounts(b, match);
  expect(tier.hits).toBe(2 * SOURCES.length);
  expect(tier.writes).toBe(0);
  return tier;
}
