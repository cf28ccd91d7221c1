/**
 * The one lifecycle every compiler family goes through (sccache's get_cached_or_compile): look up →
 * replay a hit → on a miss compile on the cluster or locally → store. A family (gcc/clang and nvcc in
 * compile-service.ts, rustc in rust-compile.ts) plugs in through `FamilyCompile`, one object per call
 * that holds what the family worked out from the arguments.
 */
import type { CachedResult } from '../cache/entries.js';
import type { Response } from '../client/protocol.js';
import type { Stats } from '../stats/stats.js';
import type { RemoteCompiler, RemoteOutcome, RemotePlan } from './remote-compile.js';

/** A compile that ran to success: what the lifecycle stores and the answer the client gets. */
export interface CompileSuccess {
  readonly stdout: Buffer;
  readonly stderr: Buffer;
  readonly success: Response;
  /** False when the call was counted already (as uncached): it is stored, not counted as a miss. */
  readonly miss?: boolean;
}

/** A finished compile: `response` alone when there is nothing to store (a crash or a failed compile). */
export type CompileRun =
  | {
      readonly response: Response;
      readonly stdout?: never;
      readonly stderr?: never;
      readonly success?: never;
      readonly miss?: never;
    }
  | (CompileSuccess & { readonly response?: never });

/** One candidate from a family's lookup. */
export type Lookup =
  | {
      readonly result: CachedResult;
      readonly counter: 'hitsDirect' | 'hitsPreprocessed';
      /** Called after the result was replayed (a family records how it found it). */
      readonly onHit?: () => Promise<void>;
    }
  /** The family answered the call itself (compiled and stored it, or will not cache it). */
  | { readonly response: Response };

/** How a family's compile runs on the cluster, or why it stays local (counted under distLocal). */
export type RemoteStep =
  | {
      readonly plan: RemotePlan;
      /** Writes the remote outputs where the compiler would have; undefined: compile locally instead. */
      accept(outcome: RemoteOutcome): CompileRun | undefined;
    }
  | { readonly local: string };

/** What a compiler family provides for one call; every method says what it does on failure. */
export interface FamilyCompile {
  /** The language group its stats are counted under ("C", "C++", "CUDA", "Rust"…). */
  readonly language: string;
  /**
   * Candidate results, best first, by the family's key recipe over its inputs. The lifecycle stops
   * at the first one it can replay. Never rejects for a damaged entry (that is a miss).
   */
  lookup(): AsyncIterable<Lookup>;
  /** The answer instead of a replay when a hit must not be replayed as it is (diagnostics for a terminal). */
  refuseReplay?(result: CachedResult): Response | undefined;
  /** Writes a hit's outputs; undefined when one cannot be written (the lifecycle compiles). */
  replay(result: CachedResult): Response | undefined;
  /** The cluster plan for a miss; undefined: this call compiles locally, uncounted. */
  remote?(): RemoteStep | undefined | Promise<RemoteStep | undefined>;
  /** The real compile on this machine. Never rejects for a compiler failure: that is its `response`. */
  local(): Promise<CompileRun>;
  /** Stores a successful compile's outputs and what leads to them; failures are counted, never thrown. */
  store(run: CompileSuccess): Promise<void>;
}

/** Counts a compile that ran (locally or remotely) and will be stored. */
export function countMiss(stats: Stats, language: string): void {
  stats.count('misses');
  stats.language(language, 'misses');
}

export async function getCachedOrCompile(
  family: FamilyCompile,
  stats: Stats,
  remote: RemoteCompiler | undefined,
): Promise<Response> {
  for await (const found of family.lookup()) {
    if ('response' in found) return found.response;
    const refused = family.refuseReplay?.(found.result);
    if (refused) return refused;
    const response = family.replay(found.result);
    if (!response) continue;
    stats.count(found.counter);
    stats.language(family.language, 'hits');
    await found.onHit?.();
    return response;
  }
  const step = remote && (await family.remote?.());
  let run: CompileRun | undefined;
  if (step && remote) {
    if ('local' in step) remote.keepLocal(step.local);
    else {
      const outcome = await remote.run(step.plan);
      if (outcome) run = step.accept(outcome);
    }
  }
  run ??= await family.local();
  if (run.response) return run.response;
  if (run.miss !== false) countMiss(stats, family.language);
  await family.store(run);
  return run.success;
}
