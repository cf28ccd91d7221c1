/**
 * Cluster trouble said once: a wrong token, a dead scheduler, a TLS pin mismatch or an empty
 * cluster would otherwise send every compile local without a word, a full cluster or a broken
 * worker would quietly cost time, and the first packaging of a compiler would take seconds
 * unexplained. Each problem is logged (warn) and queued once per
 * daemon as a one-line notice, which the compile service adds only to the stderr of a client whose
 * stderr is a terminal: through a pipe, stderr stays exactly the compiler's (autoconf reads any
 * stderr as a failed check). The problem now in force is what `kiln --show-stats` shows.
 */
import { DistError } from '../cluster/dist-client.js';
import type { Logger } from '../log.js';

/** The kinds of scheduler trouble, each with the setting that fixes it. */
export const ClusterProblem = {
  AUTH: 'auth',
  UNREACHABLE: 'unreachable',
  TLS_PIN: 'tls-pin',
  NO_WORKERS: 'no-workers',
} as const;
export type ClusterProblem = (typeof ClusterProblem)[keyof typeof ClusterProblem];

/** Why the cluster is not used, with the setting to check; undefined for a failure that is not the scheduler's as a whole. */
export function schedulerProblem(
  err: unknown,
  schedulerUrl: string,
): { kind: ClusterProblem; text: string } | undefined {
  if (!(err instanceof DistError)) return undefined;
  const detail = err.message.slice(err.reason.length + 2);
  switch (err.reason) {
    case 'scheduler refused credentials': {
      const status = /^(\d{3})\b/.exec(detail)?.[1] ?? '401';
      return {
        kind: ClusterProblem.AUTH,
        text: `the scheduler refused the client token (${status}): check [dist.auth] token / KILN_DIST_CLIENT_TOKEN`,
      };
    }
    case 'scheduler certificate mismatch':
      return {
        kind: ClusterProblem.TLS_PIN,
        text: `the scheduler's TLS certificate does not match the pin: check [dist] scheduler_cert_sha256`,
      };
    case 'scheduler unreachable':
    case 'scheduler certificate refused': {
      const why = firstLine(
        detail.startsWith(`${schedulerUrl}: `) ? detail.slice(schedulerUrl.length + 2) : detail,
      );
      return {
        kind: ClusterProblem.UNREACHABLE,
        text: `the scheduler at ${schedulerUrl} is unreachable (${why}): check [dist] scheduler_url and that \`kiln-dist scheduler\` is running`,
      };
    }
    default:
      return undefined;
  }
}

const firstLine = (s: string) => (s.split('\n')[0] ?? '').slice(0, 160);

export class ClusterNotices {
  private current: string | undefined;
  private readonly said = new Set<string>();
  private readonly queued: string[] = [];

  constructor(private readonly log: Logger) {}

  /** The cluster is not used because of `kind`: logged and queued the first time this daemon sees it. */
  problem(kind: ClusterProblem, text: string): void {
    this.current = `not used: ${text}`;
    this.once(`problem:${kind}`, `kiln: the cluster is not used: ${text}; compiling locally`);
  }

  /** A job got a worker: whatever was wrong is mended (a later relapse is not said again). */
  working(): void {
    this.current = undefined;
  }

  /**
   * `compiler` is being packaged for the cluster (seconds, once per real binary); `waited`: the
   * compile waits for it (force_remote_build), else it compiles locally meanwhile.
   */
  packaging(key: string, compiler: string, waited: boolean): void {
    this.once(
      `packaging:${key}`,
      `kiln: packaging ${compiler} for the cluster (once per compiler, a few seconds)${waited ? '' : '; compiling locally meanwhile'}`,
    );
  }

  /**
   * The scheduler had no free worker for a job (`reason`: every eligible worker busy, or fair share):
   * that compile ran locally. Said once per daemon; the cluster itself works.
   */
  full(reason: string): void {
    this.once(
      'full',
      `kiln: the cluster had no free worker (${reason}): compiling locally meanwhile; more workers, or a higher max_jobs in their worker.toml, take more jobs at once`,
    );
  }

  /**
   * Worker `id` could not be reached (`unreachable`) or failed a job for a reason of its own (a
   * crash, its sandbox, its toolchain): said once per worker per daemon.
   */
  workerTrouble(id: string, url: string, unreachable: boolean, detail: string): void {
    const what = unreachable
      ? `is unreachable (${firstLine(detail)})`
      : `failed a job (${firstLine(detail)})`;
    const check = unreachable
      ? 'check that `kiln-dist worker` runs there and its log'
      : 'check its log and `kiln --dist-status`';
    this.once(
      `worker:${id}`,
      `kiln: worker ${id} at ${url} ${what}: its jobs go to other workers or compile locally; ${check}`,
    );
  }

  /** The cluster problem in force, for `--show-stats`; undefined when there is none known. */
  status(): string | undefined {
    return this.current;
  }

  /** The queued notices, each once, as lines for a terminal's stderr; undefined when there are none. */
  take(): string | undefined {
    if (this.queued.length === 0) return undefined;
    const text = this.queued.map((line) => `${line}\n`).join('');
    this.queued.length = 0;
    return text;
  }

  private once(key: string, line: string): void {
    if (this.said.has(key)) return;
    this.said.add(key);
    this.log.warn(line.replace(/^kiln: /, ''));
    this.queued.push(line);
  }
}
