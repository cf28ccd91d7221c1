/**
 * A real redis-server for a test: its own temp dir, 127.0.0.1 on a free port, a unix socket,
 * optionally a password, TLS and a memory limit. Nothing is saved to disk.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { have } from '../prereq.js';
import { freePort } from './free-port.js';
import { type ServerProcess, startProcess, waitReady } from './process.js';

export interface RedisServerOptions {
  readonly password?: string;
  /** PEM certificate and key: the server also listens with TLS on `tlsPort`. */
  readonly tls?: { readonly cert: string; readonly key: string };
  /** e.g. "2mb", with allkeys-lru eviction. */
  readonly maxmemory?: string;
}

export interface RedisServer {
  readonly port: number;
  readonly tlsPort: number | undefined;
  readonly socket: string;
  readonly dir: string;
  /** redis://[:password@]127.0.0.1:port/db */
  url(db?: number, password?: string | undefined): string;
  /** Runs redis-cli against the server (database `db`), `input` on its stdin; its stdout. */
  cli(args: readonly string[], opts?: { db?: number; input?: Buffer }): Buffer;
  /** SIGKILL, as a crash. */
  kill(): Promise<void>;
  /** Stops it and removes its temp dir. */
  stop(): Promise<void>;
}

/** Whether redis-server can be used; under CI=true its absence throws (see prereq.ts). */
export const haveRedis = (): boolean => have('redis-server') && have('redis-cli');

export async function startRedis(options: RedisServerOptions = {}): Promise<RedisServer> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-redis-'));
  const socket = path.join(dir, 'redis.sock');
  let lastError: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const tlsPort = options.tls ? await freePort() : undefined;
    const args = [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--dir',
      dir,
      '--save',
      '',
      '--appendonly',
      'no',
      '--daemonize',
      'no',
      '--logfile',
      '',
      '--unixsocket',
      socket,
      '--unixsocketperm',
      '700',
    ];
    if (options.password) args.push('--requirepass', options.password);
    if (options.maxmemory) args.push('--maxmemory', options.maxmemory, '--maxmemory-policy', 'allkeys-lru');
    if (options.tls) {
      fs.writeFileSync(path.join(dir, 'cert.pem'), options.tls.cert);
      fs.writeFileSync(path.join(dir, 'key.pem'), options.tls.key, { mode: 0o600 });
      args.push(
        '--tls-port',
        String(tlsPort),
        '--tls-cert-file',
        path.join(dir, 'cert.pem'),
        '--tls-key-file',
        path.join(dir, 'key.pem'),
        '--tls-auth-clients',
        'no',
      );
    }
    const proc = startProcess('redis-server', args);
    try {
      await waitReady(proc, 'redis-server', async () =>
        proc.output().includes('Ready to accept connections'),
      );
      return server(proc, port, tlsPort, socket, dir, options.password);
    } catch (err) {
      lastError = err;
      await proc.kill('SIGKILL');
      if (!/Address already in use/.test(proc.output())) break;
    }
  }
  fs.rmSync(dir, { recursive: true, force: true });
  throw lastError;
}

function server(
  proc: ServerProcess,
  port: number,
  tlsPort: number | undefined,
  socket: string,
  dir: string,
  password: string | undefined,
): RedisServer {
  return {
    port,
    tlsPort,
    socket,
    dir,
    url: (db = 0, pw = password) =>
      `redis://${pw ? `:${encodeURIComponent(pw)}@` : ''}127.0.0.1:${port}/${db}`,
    cli(args, opts = {}) {
      const auth = password ? ['-a', password, '--no-auth-warning'] : [];
      const r = spawnSync(
        'redis-cli',
        ['-h', '127.0.0.1', '-p', String(port), '-n', String(opts.db ?? 0), ...auth, ...args],
        {
          input: opts.input,
          maxBuffer: 64 * 1024 * 1024,
        },
      );
      if (r.status !== 0) throw new Error(`redis-cli ${args.join(' ')} failed: ${r.stderr.toString()}`);
      return r.stdout;
    },
    kill: () => proc.kill('SIGKILL'),
    async stop() {
      await proc.kill('SIGTERM');
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
