/**
 * The small interface the cache reads and writes through: the local disk alone, or the local disk
 * followed by remote tiers (tiered-storage.ts). Asynchronous, so a network tier fits behind it.
 */
export const EntryKind = { RESULT: 'r', MANIFEST: 'm' } as const;
export type EntryKind = (typeof EntryKind)[keyof typeof EntryKind];

export interface Storage {
  /** The stored bytes, or undefined on a miss. A backend that fails to read reports a miss. */
  get(kind: EntryKind, key: string): Promise<Buffer | undefined>;
  /**
   * Stores the bytes atomically: readers see the old entry or the whole new one. Resolves once the
   * first tier (the local disk) has it; remote tiers are written in the background. Rejects when
   * the first tier cannot store it.
   */
  put(kind: EntryKind, key: string, data: Buffer): Promise<void>;
  exists(kind: EntryKind, key: string): Promise<boolean>;
  /** Removes an entry found corrupt, from every tier that may be written. Never rejects. */
  remove(kind: EntryKind, key: string): Promise<void>;
}
