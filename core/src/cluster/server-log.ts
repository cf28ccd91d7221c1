/**
 * Where the scheduler's and the worker's log lines go:
 *
 * - to `log_file` (pino's JSON lines), reopened at the same path on SIGHUP, so that logrotate can
 *   move the file away and signal (its `postrotate`), with no `copytruncate` and no lost lines;
 * - else, under systemd with stderr connected to the journal (JOURNAL_STREAM names stderr's
 *   `device:inode`, as systemd.exec(5) says to check): plain lines on stderr with sd-daemon's `<N>`
 *   priority prefix and no timestamp of their own (journald adds its own and the priority field);
 * - else to stdout (pino's JSON lines), as before.
 *
 * Lines are written synchronously: a log line is never lost to a crash, and these servers log a
 * few lines per job.
 */
import fs from 'node:fs';

/** What fastify's logger (pino) writes to: one JSON line per call. */
export interface LogStream {
  write(line: string): void;
}

/** sd-daemon(3) priorities for pino's levels: crit, err, warning, info, debug. */
const PRIORITY: Readonly<Record<number, number>> = { 60: 2, 50: 3, 40: 4, 30: 6, 20: 7, 10: 7 };

/** Whether stderr is the journal's stream (JOURNAL_STREAM is `<device>:<inode>` of it). */
export function stderrIsJournal(env: NodeJS.ProcessEnv = process.env): boolean {
  const stream = env.JOURNAL_STREAM;
  if (!stream) return false;
  try {
    const st = fs.fstatSync(2, { bigint: true });
    return stream === `${st.dev}:${st.ino}`;
  } catch {
    return false;
  }
}

/** One line on stderr: `<N>text` under the journal, else `text`. Never throws. */
export function stderrLine(priority: number, text: string, journal: boolean): void {
  try {
    fs.writeSync(2, `${journal ? `<${priority}>` : ''}${text}\n`);
  } catch {
    // stderr closed: nothing to tell anyone.
  }
}

interface PinoLine {
  level?: number;
  msg?: string;
  reqId?: string;
  req?: { method?: string; url?: string };
  res?: { statusCode?: number };
  responseTime?: number;
  err?: { message?: string };
}

/**
 * A pino JSON line as a journal line: `<6>incoming request GET /healthz (req-1)`, then
 * `<6>request completed 200 1.2 ms (req-1)`.
 */
export function journalLine(json: string): string {
  let l: PinoLine;
  try {
    l = JSON.parse(json) as PinoLine;
  } catch {
    return `<6>${json.trimEnd()}\n`;
  }
  const parts = [l.msg ?? ''];
  if (l.req?.method) parts.push(`${l.req.method} ${l.req.url ?? ''}`);
  if (l.res?.statusCode !== undefined) parts.push(String(l.res.statusCode));
  if (typeof l.responseTime === 'number') parts.push(`${l.responseTime.toFixed(1)} ms`);
  let text = parts.filter(Boolean).join(' ');
  if (l.err?.message && !text.includes(l.err.message)) text += `: ${l.err.message}`;
  if (l.reqId) text += ` (${l.reqId})`;
  // One journal entry per line: a multi-line message stays one entry.
  return `<${PRIORITY[l.level ?? 30] ?? 6}>${text.replace(/\n/g, ' ')}\n`;
}

/** The journal's stream: each pino line rewritten by journalLine, onto stderr. */
export function journalStream(): LogStream {
  return {
    write(line) {
      try {
        fs.writeSync(2, journalLine(line));
      } catch {
        // stderr closed.
      }
    },
  };
}

/** `log_file`, appended to and reopened (a new file at the same path) by `reopen()`. */
export class ReopeningFile implements LogStream {
  private fd: number | undefined;

  constructor(private readonly file: string) {
    this.fd = this.open();
  }

  private open(): number | undefined {
    try {
      return fs.openSync(this.file, 'a', 0o640);
    } catch {
      return undefined;
    }
  }

  write(line: string): void {
    if (this.fd === undefined) return;
    try {
      fs.writeSync(this.fd, line);
    } catch {
      // A full disk must not take the server down with it.
    }
  }

  /** Opens the path again (logrotate moved the old file); keeps the old one when it cannot. */
  reopen(): void {
    const next = this.open();
    if (next === undefined) return;
    const old = this.fd;
    this.fd = next;
    if (old !== undefined) fs.closeSync(old);
  }
}

/**
 * The log stream of a scheduler or worker process: `log_file` when set (the operator asked for
 * it), else the journal when stderr is one, else undefined (stdout). `reopen` is for SIGHUP.
 * `journal` says whether kiln-dist's own stderr lines take `<N>` prefixes.
 */
export function serverLogStream(
  file: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
): { readonly stream: LogStream | undefined; readonly journal: boolean; reopen(): void } {
  const journal = stderrIsJournal(env);
  if (file) {
    const f = new ReopeningFile(file);
    return { stream: f, journal, reopen: () => f.reopen() };
  }
  return { stream: journal ? journalStream() : undefined, journal, reopen() {} };
}
