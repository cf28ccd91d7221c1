/**
 * The contract of one remote cache backend (Redis, memcached, HTTP/WebDAV, S3, Azure Blob).
 *
 * A backend stores opaque byte strings under names the tier gives it. It knows nothing of
 * compression, checksums, format versions, timeouts or backoff: the tier (tiered-storage.ts)
 * does all of that the same way for every backend. One file per backend exports a
 * `BackendModule`; its client library is imported inside `create`, so a cache that uses only
 * the local disk never loads it.
 */
import type { Logger } from '../../log.js';
import type { EntryKind } from '../storage.js';

/** Where an entry lives: the tier's namespace (may be ''), the kind (result or manifest) and the key (hex). */
export interface EntryName {
  readonly namespace: string;
  readonly kind: EntryKind;
  readonly key: string;
}

/** `<namespace>/<kind>/<key>`, or `<kind>/<key>` without a namespace: the default layout. */
export function entryPath(name: EntryName): string {
  return name.namespace ? `${name.namespace}/${name.kind}/${name.key}` : `${name.kind}/${name.key}`;
}

export interface RemoteBackend {
  /**
   * The stored bytes, or undefined when the backend has no such entry. Anything else that goes
   * wrong (refused, timed out, wrong password, bucket missing) throws; the tier counts it and
   * treats it as a miss. Must give up when `signal` aborts.
   */
  get(name: EntryName, signal: AbortSignal): Promise<Buffer | undefined>;
  /** Stores the bytes so that readers see the old entry or the whole new one, never a part. Throws on failure. */
  put(name: EntryName, data: Buffer, signal: AbortSignal): Promise<void>;
  exists(name: EntryName, signal: AbortSignal): Promise<boolean>;
  /** Removes the entry; removing an absent entry is not an error. */
  remove(name: EntryName, signal: AbortSignal): Promise<void>;
  /** Bytes held (under the namespace where the backend can tell), or undefined when it cannot tell cheaply. */
  size?(signal: AbortSignal): Promise<number | undefined>;
  /** Closes connections; the backend is not used afterwards. */
  close(): Promise<void>;
}

export interface BackendContext {
  readonly log: Logger;
  /** How long to wait for a connection before the operation fails (ms). */
  readonly connectTimeoutMs: number;
  /** The process environment, for credentials a backend may read from it (AWS_*, AZURE_*). */
  readonly env: Readonly<Record<string, string | undefined>>;
}

export interface BackendModule<Options = unknown> {
  /** The `type` in `[[cache.remote]]`, e.g. "redis". */
  readonly type: string;
  /** URL schemes that select this backend when `type` is not given, e.g. ["redis", "rediss"]. */
  readonly schemes: readonly string[];
  /** The backend's own keys in a `[[cache.remote]]` table, beyond the common ones. */
  readonly keys: readonly string[];
  /**
   * Checks `url` and the backend's own keys of the table; throws a KilnError naming the key and
   * `where` (file and line, or the environment variable) on a bad value. Cheap and synchronous: it
   * runs when the config is read, without the client library.
   */
  parseOptions(url: string, table: Readonly<Record<string, unknown>>, where: string): Options;
  /** The URL without credentials, for logs and `kiln --show-stats`. */
  describe(url: string): string;
  /** Makes the backend; may import the client library. Connects lazily or here, never throwing for a dead server. */
  create(options: Options, context: BackendContext): Promise<RemoteBackend>;
}
