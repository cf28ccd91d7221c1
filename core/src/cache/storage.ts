/** The tiny interface every cache backend implements (local disk now, remote tiers later). */
export const EntryKind = { RESULT: 'r', MANIFEST: 'm' } as const;
export type EntryKind = (typeof EntryKind)[keyof typeof EntryKind];

export interface Storage {
  /** The stored bytes, or undefined on a miss. A backend that fails to read reports a miss. */
  get(kind: EntryKind, key: string): Buffer | undefined;
  /** Stores the bytes atomically: readers see the old entry or the whole new one. Throws on failure. */
  put(kind: EntryKind, key: string, data: Buffer): void;
  /** Removes an entry (for instance one found corrupt). Never throws. */
  remove(kind: EntryKind, key: string): void;
  /** Bytes currently held, as far as this process knows. */
  size(): number;
}
