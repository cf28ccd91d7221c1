/**
 * What each job token is being and has been used for. A job token runs one job; until then it may
 * upload its toolchain (again, if the worker lost it), one request at a time: a client cannot make
 * the worker receive many bodies at once with one token. Used tokens are remembered until they
 * expire (after that, the signature check refuses them anyway).
 */
import type { JobGrant } from '../auth.js';

export type TokenUse = 'upload' | 'run';

interface State {
  readonly exp: number;
  ran: boolean;
  readonly busy: Set<TokenUse>;
}

export type Refusal = 'ran' | 'busy';

export class JobGrants {
  private readonly states = new Map<string, State>();
  private nextSweepS = 0;

  /**
   * Starts a request that uses the token for `use`: the function that ends it, or why it is
   * refused (the job ran already, or a request of that kind with this token is in flight).
   * Synchronous, so two concurrent requests with one token cannot both pass.
   */
  begin(grant: JobGrant, use: TokenUse): (() => void) | Refusal {
    this.sweep();
    let state = this.states.get(grant.jobId);
    if (!state) {
      state = { exp: grant.exp, ran: false, busy: new Set() };
      this.states.set(grant.jobId, state);
    }
    if (state.ran) return 'ran';
    if (state.busy.has(use)) return 'busy';
    state.busy.add(use);
    const s = state;
    return () => void s.busy.delete(use);
  }

  /** Marks the job run; false when it ran already. */
  spend(jobId: string): boolean {
    const state = this.states.get(jobId);
    if (!state || state.ran) return false;
    state.ran = true;
    return true;
  }

  /** Whether the job already ran (its token is spent for anything but a ping). */
  ran(jobId: string): boolean {
    return this.states.get(jobId)?.ran ?? false;
  }

  private sweep(): void {
    const nowS = Date.now() / 1000;
    if (nowS < this.nextSweepS) return;
    this.nextSweepS = nowS + 10;
    for (const [jobId, s] of this.states) if (s.exp <= nowS && s.busy.size === 0) this.states.delete(jobId);
  }
}
