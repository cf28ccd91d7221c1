/**
 * Which compiles are faster kept local ("tiny"): a remote compile costs a roughly fixed overhead
 * (allocation, sending the input, the sandbox, the answer) on top of the compile itself. The daemon
 * learns both from the jobs it sends: the overhead, and per compiler and code-generation flags how
 * long a compile takes per KiB of preprocessed input on the workers. A compile whose expected time
 * is below the overhead is tiny. Until enough jobs taught it, nothing is tiny.
 */

/** Jobs to learn from before deciding, per flag set and for the overhead. */
export const MIN_SAMPLES = 3;
/** Weight of a new sample in the moving averages. */
const ALPHA = 0.25;
/** Flag sets remembered; the oldest is forgotten past this. */
const MAX_KEYS = 1000;

/** The flags that change how long code generation takes: -O, -g, -f…, -m…, -std=. */
export function codegenKey(program: string, language: string, compileArgs: readonly string[]): string {
  const flags = compileArgs.filter((a) => /^-(O|g|f|m|std=)/.test(a));
  return [program, language, ...flags].join('\0');
}

interface Rate {
  msPerKib: number;
  samples: number;
}

export class TinyCompiles {
  private readonly rates = new Map<string, Rate>();
  private overheadMs = 0;
  private overheadSamples = 0;

  /** One remote job: `compileMs` on the worker, `overheadMs` the rest of its wall time as seen here. */
  record(key: string, inputBytes: number, compileMs: number, overheadMs: number): void {
    if (!(compileMs >= 0 && overheadMs >= 0 && inputBytes > 0)) return;
    const msPerKib = compileMs / (inputBytes / 1024);
    const known = this.rates.get(key);
    if (known) {
      known.msPerKib += ALPHA * (msPerKib - known.msPerKib);
      known.samples++;
      // Most recently used last, so the first one is the one to forget.
      this.rates.delete(key);
      this.rates.set(key, known);
    } else {
      this.rates.set(key, { msPerKib, samples: 1 });
      if (this.rates.size > MAX_KEYS) this.rates.delete(this.rates.keys().next().value!);
    }
    this.overheadMs =
      this.overheadSamples === 0 ? overheadMs : this.overheadMs + ALPHA * (overheadMs - this.overheadMs);
    this.overheadSamples++;
  }

  /** The expected compile time and the overhead when both are known well enough. */
  estimate(key: string, inputBytes: number): { compileMs: number; overheadMs: number } | undefined {
    const rate = this.rates.get(key);
    if (!rate || rate.samples < MIN_SAMPLES || this.overheadSamples < MIN_SAMPLES) return undefined;
    return { compileMs: rate.msPerKib * (inputBytes / 1024), overheadMs: this.overheadMs };
  }
}
