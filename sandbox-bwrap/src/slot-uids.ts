/**
 * Host uids for running jobs, one per job slot: `base + slot`, the lowest slot not in use.
 * RLIMIT_NPROC counts processes per real uid, so a job must hold a uid no other job shares for its
 * process limit to be its own (and for a fork bomb not to starve the jobs next to it).
 */
export class SlotUids {
  readonly #busy = new Set<number>();

  constructor(readonly base: number) {}

  acquire(): number {
    let slot = 0;
    while (this.#busy.has(slot)) slot++;
    this.#busy.add(slot);
    return this.base + slot;
  }

  release(uid: number): void {
    this.#busy.delete(uid - this.base);
  }
}
