/**
 * The daemons a differential test file talks to (one per config, started on first use) and what
 * their stats say a call did.
 */
import fs from 'node:fs';
import { Action } from '../../core/dist/client/protocol.js';
import { control } from '../../core/dist/client/thin-client.js';
import { KilnSandbox, type StatsJson } from '../helpers/kiln.js';
import { CONFIGS, type Config, type Outcome } from './scenario.js';

export type Stats = StatsJson['stats'];

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The config's daemons, started on first use; daemon n > 0 shares daemon 0's cache dir. */
export class SandboxPool {
  private readonly boxes = new Map<string, KilnSandbox>();

  get(config: Config, daemon = 0): KilnSandbox {
    const key = `${config}/${daemon}`;
    let sb = this.boxes.get(key);
    if (!sb) {
      const shared = daemon > 0 ? { KILN_CACHE_DIR: this.get(config).cacheDir } : {};
      sb = new KilnSandbox('native', { ...CONFIGS[config], ...shared });
      for (const [k, v] of Object.entries(sb.env))
        if (v?.includes('{work}')) sb.env[k] = v.replace('{work}', sb.work);
      const r = sb.kiln(['--start-server']);
      if (r.status !== 0) throw new Error(`kiln --start-server failed: ${r.stderr}`);
      this.boxes.set(key, sb);
    }
    return sb;
  }

  /** The directory scenarios of `config` live in. */
  work(config: Config): string {
    return this.get(config).work;
  }

  /** Stops every daemon at once (each takes a while to exit), then removes their directories. */
  async dispose(): Promise<void> {
    const boxes = [...this.boxes.values()];
    this.boxes.clear();
    const pids = boxes.map((sb) => sb.daemonPid());
    await Promise.all(boxes.map((sb) => control('stop', sb.env, false)));
    const end = Date.now() + 5000;
    while (Date.now() < end && pids.some((pid) => pid && fs.existsSync(`/proc/${pid}`))) await pause(20);
    for (const sb of boxes)
      fs.rmSync(sb.dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 });
  }
}

/** The daemon's counters (one socket round trip, no client process). */
export async function readStats(sb: KilnSandbox): Promise<Stats> {
  const res = await control('stats', sb.env, false);
  if (res?.action !== Action.RESULT || res.exitCode !== 0)
    throw new Error(`the daemon in ${sb.dir} did not answer stats`);
  return (JSON.parse(res.stdout.toString()) as StatsJson).stats;
}

export interface Observed {
  readonly kind: Outcome | 'none' | 'several';
  readonly text: string;
}

/** What one call did according to the stats: exactly one counter must have moved, by one. */
export function outcomeOf(before: Stats, after: Stats): Observed {
  const moved: [Outcome, number][] = [
    ['hit', after.hitsDirect + after.hitsPreprocessed - before.hitsDirect - before.hitsPreprocessed],
    ['miss', after.misses - before.misses],
    ['failed', after.compileFailed - before.compileFailed],
  ];
  const reasons: string[] = [];
  let uncached = 0;
  for (const [reason, n] of Object.entries(after.nonCacheable)) {
    const d = n - (before.nonCacheable[reason] ?? 0);
    if (d) reasons.push(reason);
    uncached += d;
  }
  moved.push(['uncached', uncached]);
  const errors = Object.entries(after.errors)
    .filter(([k, n]) => n !== (before.errors[k] ?? 0))
    .map(([k]) => k);
  const extra = errors.length ? ` (errors: ${errors.join(', ')})` : '';
  const nonZero = moved.filter(([, n]) => n !== 0);
  if (nonZero.length === 0) return { kind: 'none', text: `no outcome${extra}` };
  const text =
    nonZero
      .map(([k, n]) => `${k}${n === 1 ? '' : ` ×${n}`}${k === 'uncached' ? ` (${reasons.join(', ')})` : ''}`)
      .join(' + ') + extra;
  if (nonZero.length > 1 || nonZero[0]![1] !== 1) return { kind: 'several', text };
  return { kind: nonZero[0]![0], text };
}
