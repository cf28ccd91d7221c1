/**
 * One remote tier: a backend behind the same rules for all of them. Every operation has a
 * deadline; a failure or timeout is a miss (or a skipped write), counted, and the tier then backs
 * off (1 s, doubling to a minute) with a single probe at a time once the pause is over, so a dead
 * or hung server costs one deadline per pause, never a stuck or failed build.
 */
import type { Logger } from '../../log.js';
import type { Stats } from '../../stats/stats.js';
import type { EntryKind } from '../storage.js';
import type { EntryName, RemoteBackend } from './backend.js';
import { decodeFrame, encodeFrame } from './frame.js';
import type { RemoteTierConfig } from './tier-config.js';

const FIRST_PAUSE_MS = 1000;
const MAX_PAUSE_MS = 60_000;
/** Writes waiting for one tier beyond this many bytes are dropped (and counted). */
const MAX_PENDING_BYTES = 256 * 1024 ** 2;

const FAILED = Symbol('failed');

class TimeoutError extends Error {}

export class RemoteTier {
  private backend: Promise<RemoteBackend> | undefined;
  private failures = 0;
  private pausedUntil = 0;
  private probing = false;
  private disabled = false;
  private pendingBytes = 0;
  private readonly pending = new Set<Promise<void>>();

  constructor(
    readonly config: RemoteTierConfig,
    private readonly stats: Stats,
    private readonly log: Logger,
    private readonly env: Readonly<Record<string, string | undefined>>,
  ) {}

  get label(): string {
    return this.config.label;
  }

  get writable(): boolean {
    return !this.config.readOnly && !this.disabled;
  }

  private name(kind: EntryKind, key: string): EntryName {
    return { namespace: this.config.namespace, kind, key };
  }

  private connect(): Promise<RemoteBackend> {
    this.backend ??= this.config.module
      .create(this.config.options, {
        log: this.log,
        connectTimeoutMs: this.config.connectTimeoutMs,
        env: this.env,
      })
      .catch((err: Error) => {
        // Tried again after the pause.
        this.backend = undefined;
        throw err;
      });
    return this.backend;
  }

  /**
   * Whether an operation may go to the server now: `go` when it is healthy, `probe` for the one
   * operation that tries it again once the pause is over, `skip` otherwise.
   */
  private admit(): 'go' | 'probe' | 'skip' {
    if (this.disabled) return 'skip';
    if (this.failures === 0) return 'go';
    if (Date.now() < this.pausedUntil || this.probing) return 'skip';
    this.probing = true;
    return 'probe';
  }

  private async op<T>(
    what: string,
    fn: (backend: RemoteBackend, signal: AbortSignal) => Promise<T>,
  ): Promise<T | typeof FAILED> {
    const admitted = this.admit();
    if (admitted === 'skip') {
      this.stats.tier(this.label, 'skipped');
      return FAILED;
    }
    const ms = this.config.operationTimeoutMs;
    const controller = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    // A backend that ignores its signal still cannot hold the build past the deadline.
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const err = new TimeoutError(`no answer within ${ms} ms`);
        controller.abort(err);
        reject(err);
      }, ms);
    });
    try {
      const result = await Promise.race([this.connect().then((b) => fn(b, controller.signal)), deadline]);
      if (this.failures > 0) this.log.info(`cache tier ${this.label} answers again`);
      this.failures = 0;
      return result;
    } catch (err) {
      const timedOut = err instanceof TimeoutError || controller.signal.aborted;
      this.stats.tier(this.label, timedOut ? 'timeouts' : 'errors');
      this.failures++;
      const pause = Math.min(FIRST_PAUSE_MS * 2 ** (this.failures - 1), MAX_PAUSE_MS);
      this.pausedUntil = Date.now() + pause;
      this.log.warn(
        `cache tier ${this.label}: ${what} failed (${(err as Error).message}); not used for ${pause / 1000} s`,
      );
      return FAILED;
    } finally {
      clearTimeout(timer);
      if (admitted === 'probe') this.probing = false;
      // The deadline's rejection is handled by the race; keep an unused one quiet.
      deadline.catch(() => {});
    }
  }

  /** The entry, or undefined on a miss, a failure, or a damaged or foreign entry. */
  async get(kind: EntryKind, key: string): Promise<Buffer | undefined> {
    const frame = await this.op('get', (b, signal) => b.get(this.name(kind, key), signal));
    if (frame === FAILED) return undefined;
    if (!frame) {
      this.stats.tier(this.label, 'misses');
      return undefined;
    }
    const data = await decodeFrame(frame);
    if (typeof data === 'string') {
      this.stats.tier(this.label, data === 'corrupt' ? 'corrupt' : 'otherFormat');
      this.log.warn(
        `cache tier ${this.label}: ${kind}/${key} is ${data === 'corrupt' ? 'damaged' : 'of another format'}: a miss`,
      );
      return undefined;
    }
    this.stats.tier(this.label, 'hits');
    this.stats.tier(this.label, 'bytesRead', frame.length);
    return data;
  }

  /** Writes in the background (never delaying the build); `backfill` marks a copy of a later tier's hit. */
  put(kind: EntryKind, key: string, data: Buffer, backfill = false): void {
    if (!this.writable) return;
    if (this.pendingBytes + data.length > MAX_PENDING_BYTES) {
      this.stats.tier(this.label, 'dropped');
      return;
    }
    this.pendingBytes += data.length;
    const task = (async () => {
      const frame = await encodeFrame(data, this.config.compression);
      const done = await this.op('put', (b, signal) => b.put(this.name(kind, key), frame, signal));
      if (done === FAILED) {
        if (this.config.writeErrors === 'disable' && !this.disabled && this.failures > 0) {
          this.disabled = true;
          this.log.warn(`cache tier ${this.label}: disabled after a failed write (write_errors = "disable")`);
        }
        return;
      }
      this.stats.tier(this.label, 'writes');
      if (backfill) this.stats.tier(this.label, 'backfills');
      this.stats.tier(this.label, 'bytesWritten', frame.length);
    })()
      .catch((err: Error) => this.log.warn(`cache tier ${this.label}: cannot write: ${err.message}`))
      .finally(() => {
        this.pendingBytes -= data.length;
        this.pending.delete(task);
      });
    this.pending.add(task);
  }

  async exists(kind: EntryKind, key: string): Promise<boolean> {
    const found = await this.op('exists', (b, signal) => b.exists(this.name(kind, key), signal));
    return found === true;
  }

  remove(kind: EntryKind, key: string): void {
    if (!this.writable) return;
    const task = this.op('remove', (b, signal) => b.remove(this.name(kind, key), signal))
      .then(() => undefined)
      .finally(() => this.pending.delete(task));
    this.pending.add(task);
  }

  /** Bytes the backend says it holds, when it can tell (within a second). */
  async size(): Promise<number | undefined> {
    if (this.disabled) return undefined;
    const n = await this.op('size', (b, signal) => b.size?.(signal) ?? Promise.resolve(undefined));
    return n === FAILED ? undefined : n;
  }

  /** Waits for background writes, at most `ms`; true when none is left. */
  async flush(ms: number): Promise<boolean> {
    const end = Date.now() + ms;
    while (this.pending.size > 0 && Date.now() < end) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.allSettled([...this.pending]),
        new Promise((r) => {
          timer = setTimeout(r, end - Date.now());
        }),
      ]);
      clearTimeout(timer);
    }
    return this.pending.size === 0;
  }

  async close(): Promise<void> {
    const backend = this.backend;
    this.backend = undefined;
    if (backend) await backend.then((b) => b.close()).catch(() => {});
  }
}
