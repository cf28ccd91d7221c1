/**
 * Prometheus metrics for kiln's servers, in the text exposition format (version 0.0.4). Written by
 * hand: counters, gauges read at scrape time and histograms are all the servers need, and a
 * worker forks every job, so it carries no metrics library.
 */
import { createHash, timingSafeEqual } from 'node:crypto';

export type Labels = Readonly<Record<string, string>>;

export const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

/** Seconds: from a trivial compile to the default job_timeout. */
export const DURATION_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600] as const;

const escapeLabel = (v: string) => v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');

function labelText(labels: Labels): string {
  const keys = Object.keys(labels).sort();
  return keys.length ? `{${keys.map((k) => `${k}="${escapeLabel(labels[k]!)}"`).join(',')}}` : '';
}

const number = (n: number) => (Number.isFinite(n) ? String(n) : n > 0 ? '+Inf' : n < 0 ? '-Inf' : 'NaN');

interface Family {
  readonly type: 'counter' | 'gauge' | 'histogram';
  readonly help: string;
  lines(name: string): string[];
}

export class Counter implements Family {
  readonly type = 'counter';
  private readonly values = new Map<string, number>();
  constructor(readonly help: string) {}
  inc(labels: Labels = {}, by = 1): void {
    const key = labelText(labels);
    this.values.set(key, (this.values.get(key) ?? 0) + by);
  }
  lines(name: string): string[] {
    return [...this.values].map(([labels, v]) => `${name}${labels} ${number(v)}`);
  }
}

/** A value read when scraped, one sample per label set `read` answers. */
export class Gauge implements Family {
  readonly type = 'gauge';
  constructor(
    readonly help: string,
    private readonly read: () => Iterable<readonly [Labels, number]>,
  ) {}
  lines(name: string): string[] {
    return [...this.read()].map(([labels, v]) => `${name}${labelText(labels)} ${number(v)}`);
  }
}

export class Histogram implements Family {
  readonly type = 'histogram';
  private readonly series = new Map<string, { labels: Labels; counts: number[]; sum: number; n: number }>();
  constructor(
    readonly help: string,
    private readonly buckets: readonly number[] = DURATION_BUCKETS,
  ) {}
  observe(value: number, labels: Labels = {}): void {
    const key = labelText(labels);
    let s = this.series.get(key);
    if (!s) {
      s = { labels, counts: this.buckets.map(() => 0), sum: 0, n: 0 };
      this.series.set(key, s);
    }
    this.buckets.forEach((le, i) => {
      if (value <= le) s.counts[i]!++;
    });
    s.sum += value;
    s.n++;
  }
  lines(name: string): string[] {
    const out: string[] = [];
    for (const s of this.series.values()) {
      this.buckets.forEach((le, i) => {
        out.push(`${name}_bucket${labelText({ ...s.labels, le: String(le) })} ${s.counts[i]}`);
      });
      out.push(`${name}_bucket${labelText({ ...s.labels, le: '+Inf' })} ${s.n}`);
      out.push(`${name}_sum${labelText(s.labels)} ${number(s.sum)}`);
      out.push(`${name}_count${labelText(s.labels)} ${s.n}`);
    }
    return out;
  }
}

export class MetricsRegistry {
  private readonly families = new Map<string, Family>();

  private add<F extends Family>(name: string, family: F): F {
    if (this.families.has(name)) throw new Error(`metric ${name} registered twice`);
    this.families.set(name, family);
    return family;
  }
  counter(name: string, help: string): Counter {
    return this.add(name, new Counter(help));
  }
  gauge(name: string, help: string, read: () => Iterable<readonly [Labels, number]>): Gauge {
    return this.add(name, new Gauge(help, read));
  }
  histogram(name: string, help: string, buckets?: readonly number[]): Histogram {
    return this.add(name, new Histogram(help, buckets));
  }

  /** Every family with its HELP and TYPE lines, even one with no samples yet. */
  render(): string {
    const out: string[] = [];
    for (const [name, f] of this.families) {
      out.push(`# HELP ${name} ${f.help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')}`);
      out.push(`# TYPE ${name} ${f.type}`);
      out.push(...f.lines(name));
    }
    return `${out.join('\n')}\n`;
  }
}

/**
 * Label values that come from clients (a requested host triple) are kept only while there are few
 * of them: past `max` distinct values, new ones count as "other", so that a client cannot grow
 * the scheduler's memory by asking for made-up pools.
 */
export class BoundedLabel {
  private readonly seen = new Set<string>();
  constructor(private readonly max = 64) {}
  of(value: string): string {
    if (this.seen.has(value)) return value;
    if (this.seen.size >= this.max || !/^[A-Za-z0-9_.-]{1,64}$/.test(value)) return 'other';
    this.seen.add(value);
    return value;
  }
}

/** Compares a presented token to the expected one in constant time (both hashed first). */
export function sameToken(presented: string | undefined, expected: string): boolean {
  if (!presented) return false;
  const h = (s: string) => createHash('sha256').update(s).digest();
  return timingSafeEqual(h(presented), h(expected));
}
