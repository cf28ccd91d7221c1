/**
 * What each job token has been used for. A job token runs one job and uploads the toolchain it
 * was allocated for once; a replay is refused. Used tokens are remembered until they expire
 * (after that, the signature check refuses them anyway).
 */
import type { JobGrant } from '../auth.js';

export type TokenUse = 'upload' | 'run';

interface Used {
  readonly exp: number;
  readonly uses: Set<TokenUse>;
}

export class JobGrants {
  private readonly used = new Map<string, Used>();
  private nextSweepS = 0;

  /**
   * Records `use` of the token; false when it was made already. Synchronous, so two concurrent
   * requests with one token cannot both pass.
   */
  claim(grant: JobGrant, use: TokenUse): boolean {
    this.sweep();
    let entry = this.used.get(grant.jobId);
    if (!entry) {
      entry = { exp: grant.exp, uses: new Set() };
      this.used.set(grant.jobId, entry);
    }
    if (entry.uses.has(use)) return false;
    entry.uses.add(use);
    return true;
  }

  /** Whether the job already ran (its token is spent for anything but a ping). */
  ran(jobId: string): boolean {
    return this.used.get(jobId)?.uses.has('run') ?? false;
  }

  /** Tokens remembered now (for tests and status). */
  size(): number {
    return this.used.size;
  }

  private sweep(): void {
    const nowS = Date.now() / 1000;
    if (nowS < this.nextSweepS) return;
    this.nextSweepS = nowS + 10;
    for (const [jobId, u] of this.used) if (u.exp <= nowS) this.used.delete(jobId);
  }
}
