/**
 * Warm containers, kept idle per key (image, mount point, limits) so that a job costs a request to
 * kiln-runner, not a container start. A container goes back only when its runner is alive and its
 * slot is clean; idle ones go after `idleMs`, and the ones past `warm` per key at once.
 */

import type { Slot } from './job-slot.js';
import type { RunnerChannel } from './runner-channel.js';

export interface WarmContainer {
  readonly id: string;
  readonly imageId: string;
  readonly key: string;
  readonly slot: Slot;
  readonly channel: RunnerChannel;
  idleSince: number;
}

export class ContainerPool {
  readonly #idle = new Map<string, WarmContainer[]>();
  readonly #busy = new Set<WarmContainer>();
  readonly #sweeper: NodeJS.Timeout;

  constructor(
    private readonly warm: number,
    private readonly idleMs: number,
    private readonly destroy: (c: WarmContainer) => Promise<void>,
  ) {
    this.#sweeper = setInterval(() => void this.sweep(), Math.min(30_000, idleMs)).unref();
  }

  /** An idle container of `key` with a live runner, or one `make` creates. Rejects as `make` does. */
  async acquire(key: string, make: () => Promise<WarmContainer>): Promise<WarmContainer> {
    const list = this.#idle.get(key);
    while (list?.length) {
      const c = list.pop()!;
      if (!c.channel.closed) {
        this.#busy.add(c);
        return c;
      }
      await this.destroy(c);
    }
    const c = await make();
    this.#busy.add(c);
    return c;
  }

  /** Takes a container back after a job: idle when `clean` and there is room, else destroyed. */
  async giveBack(c: WarmContainer, clean: boolean): Promise<void> {
    this.#busy.delete(c);
    const list = this.#idle.get(c.key) ?? [];
    if (!clean || c.channel.closed || list.length >= this.warm) return this.destroy(c);
    c.idleSince = Date.now();
    list.push(c);
    this.#idle.set(c.key, list);
  }

  /** Destroys a busy container that cannot be used again (its engine or runner failed). */
  async discard(c: WarmContainer): Promise<void> {
    this.#busy.delete(c);
    await this.destroy(c);
  }

  /** Destroys the idle containers of an image; whether none of its containers is busy. */
  async releaseImage(imageId: string): Promise<boolean> {
    for (const [key, list] of this.#idle) {
      const keep = list.filter((c) => c.imageId !== imageId);
      for (const c of list) if (c.imageId === imageId) await this.destroy(c);
      this.#idle.set(key, keep);
    }
    return ![...this.#busy].some((c) => c.imageId === imageId);
  }

  async sweep(now = Date.now()): Promise<void> {
    for (const [key, list] of this.#idle) {
      const old = list.filter((c) => now - c.idleSince >= this.idleMs || c.channel.closed);
      if (!old.length) continue;
      this.#idle.set(
        key,
        list.filter((c) => !old.includes(c)),
      );
      for (const c of old) await this.destroy(c);
    }
  }

  idleCount(): number {
    let n = 0;
    for (const list of this.#idle.values()) n += list.length;
    return n;
  }

  async close(): Promise<void> {
    clearInterval(this.#sweeper);
    const all = [...this.#idle.values()].flat();
    this.#idle.clear();
    for (const c of all) await this.destroy(c);
  }
}
