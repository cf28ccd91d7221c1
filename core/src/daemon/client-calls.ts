/**
 * What the daemon and its hit workers share about a thin client's call: reading one request frame
 * from a connection and writing one answer, and turning a decoded request into a CompileRequest.
 */
import { isUtf8 } from 'node:buffer';
import fs from 'node:fs';
import type net from 'node:net';
import { kilnSelfPaths } from '../client/find-executable.js';
import { FrameReader, MAX_REQUEST_FRAME, type Request, RequestFlag, umaskOf } from '../client/protocol.js';
import type { Logger } from '../log.js';
import type { CompileRequest } from './compile-request.js';

const REQUEST_TIMEOUT_MS = 30_000;

/**
 * The config file's identity: one stat, a few microseconds, so it is taken on every request
 * (a compile already stats dozens of files) and the next request after an edit sees it.
 */
export function configIdentity(file: string): string {
  const st = fs.statSync(file, { throwIfNoEntry: false, bigint: true });
  return st ? `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}` : 'missing';
}

function envObject(entries: readonly Buffer[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const entry of entries) {
    const s = entry.toString();
    const eq = s.indexOf('=');
    if (eq > 0) env[s.slice(0, eq)] = s.slice(eq + 1);
  }
  return env;
}

/**
 * Reads one request frame from `conn` and writes back what `answer` makes of it. A client that
 * sends too much, stops half-way or stays silent for 30 s is dropped; an answer that fails is
 * `failed` (the client then runs the compiler itself).
 */
export function serveConnection(
  conn: net.Socket,
  log: Logger,
  answer: (body: Buffer) => Promise<Buffer>,
  failed: Buffer,
  hooks: { begin(): void; end(): void },
): void {
  const reader = new FrameReader(MAX_REQUEST_FRAME);
  let handled = false;
  conn.setTimeout(REQUEST_TIMEOUT_MS, () => {
    if (!handled) conn.destroy();
  });
  conn.on('error', () => conn.destroy());
  // A client that stops sending before a whole frame arrived will never complete it.
  conn.on('end', () => {
    if (!handled) conn.destroy();
  });
  conn.on('data', (chunk: Buffer) => {
    if (handled) return;
    let body: Buffer | undefined;
    try {
      body = reader.push(chunk);
    } catch (err) {
      log.warn(`dropping client: ${(err as Error).message}`);
      handled = true;
      conn.destroy();
      return;
    }
    if (!body) return;
    handled = true;
    conn.setTimeout(0);
    hooks.begin();
    answer(body)
      .then((res) => conn.end(res))
      .catch((err: Error) => {
        log.error(`request failed: ${err.stack}`);
        conn.end(failed);
      })
      .finally(() => hooks.end());
  });
}

/**
 * Turns requests into CompileRequests: the environment as an object, the caller's umask (or the
 * one of the client that started the daemon), and the paths that are kiln itself, learned from
 * each client that connects, so that kiln never takes itself for the compiler.
 */
export class ClientCalls {
  private readonly selfPaths: Set<string>;
  private readonly knownClients = new Set<string>();

  constructor(
    selfPaths: readonly string[],
    private readonly callerUmask: number,
  ) {
    this.selfPaths = kilnSelfPaths(...selfPaths);
  }

  /** Undefined when the arguments, working directory or environment are not UTF-8. */
  compileRequest(req: Request): CompileRequest | undefined {
    if (![req.cwd, req.self, ...req.argv, ...req.env].every((b) => isUtf8(b))) return undefined;
    const self = req.self.toString();
    if (self && !this.knownClients.has(self)) {
      this.knownClients.add(self);
      for (const real of kilnSelfPaths(self)) this.selfPaths.add(real);
    }
    return {
      cwd: req.cwd.toString(),
      argv: req.argv.map(String),
      env: envObject(req.env),
      skip: this.selfPaths,
      stderrTty: (req.flags & RequestFlag.STDERR_TTY) !== 0,
      stdinTty: (req.flags & RequestFlag.STDIN_TTY) !== 0,
      umask: umaskOf(req.flags) ?? this.callerUmask,
    };
  }
}
