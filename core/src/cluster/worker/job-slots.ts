import { KILN_ERR_DIST_UNAVAILABLE } from '../../errors.js';

/** At most `max` jobs run at once; a few more wait; beyond that a job is refused (the client compiles locally). */
export class JobSlots {
  private running = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(
    private readonly max: number,
    private readonly maxWaiting: number,
  ) {}

  async acquire(): Promise<() => void> {
    if (this.running >= this.max) {
      if (this.waiting.length >= this.maxWaiting) throw KILN_ERR_DIST_UNAVAILABLE('worker is at max_jobs');
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    } else this.running++;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const next = this.waiting.shift();
      if (next) next();
      else this.running--;
    };
  }
}
