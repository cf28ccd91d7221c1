/**
 * A real loopback cluster for tests: `kiln-dist scheduler` and `kiln-dist worker` processes with
 * generated configs, ports picked by the OS.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ClusterStatus } from '../../core/src/dist/api.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const KILN_DIST = path.join(root, 'core', 'dist', 'cli', 'kiln-dist.js');

export interface ServerProcess {
  readonly url: string;
  readonly proc: ChildProcess;
  output(): string;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

export function kilnDist(args: readonly string[], node = process.execPath): string {
  const r = spawnSync(node, [KILN_DIST, ...args], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`kiln-dist ${args.join(' ')}: ${r.stderr}`);
  return r.stdout.trim();
}

/** Starts a kiln-dist server and resolves once it prints the address it listens on. */
export function startServer(
  args: readonly string[],
  opts: { node?: string; prefix?: string[]; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {},
) {
  const { NODE_EXTRA_CA_CERTS: _, ...base } = process.env;
  const env = { ...base, ...opts.env };
  const command = opts.prefix?.[0] ?? opts.node ?? process.execPath;
  const argv = [
    ...(opts.prefix?.slice(1) ?? []),
    ...(opts.prefix ? [opts.node ?? process.execPath] : []),
    KILN_DIST,
    ...args,
  ];
  const proc = spawn(command, argv, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  return new Promise<ServerProcess>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`kiln-dist ${args.join(' ')} did not start:\n${out}`)),
      opts.timeoutMs ?? 20_000,
    );
    const onData = (c: Buffer) => {
      out += c;
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({
          url: m[1]!,
          proc,
          output: () => out,
          stop: (signal = 'SIGTERM') =>
            new Promise<void>((done) => {
              if (proc.exitCode !== null || proc.signalCode !== null) return done();
              proc.once('exit', () => done());
              proc.kill(signal);
            }),
        });
      }
    };
    proc.stdout!.on('data', onData);
    proc.stderr!.on('data', onData);
    proc.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`kiln-dist ${args.join(' ')} exited with ${code}:\n${out}`));
    });
  });
}

export interface ClusterFiles {
  readonly dir: string;
  readonly secret: string;
  readonly clientToken: string;
}

export function clusterFiles(dir: string): ClusterFiles {
  fs.mkdirSync(dir, { recursive: true });
  return {
    dir,
    secret: kilnDist(['auth', 'generate-jwt-hs256-key']),
    clientToken: `client-${path.basename(dir)}`,
  };
}

export function writeSchedulerConfig(files: ClusterFiles, port = 0, extra = ''): string {
  const file = path.join(files.dir, 'scheduler.toml');
  fs.writeFileSync(
    file,
    `public_addr = "127.0.0.1:${port}"
worker_timeout = 3
${extra}
[client_auth]
type = "token"
token = "${files.clientToken}"
[worker_auth]
type = "jwt_hs256"
secret_key = "${files.secret}"
`,
  );
  return file;
}

export function writeWorkerConfig(files: ClusterFiles, id: string, schedulerUrl: string, extra = ''): string {
  const token = kilnDist([
    'auth',
    'generate-jwt-hs256-worker-token',
    '--worker',
    id,
    '--secret-key',
    files.secret,
  ]);
  const file = path.join(files.dir, `${id}.toml`);
  fs.writeFileSync(
    file,
    `id = "${id}"
public_addr = "127.0.0.1:0"
scheduler_url = "${schedulerUrl}"
cache_dir = "${path.join(files.dir, id)}"
max_jobs = 2
sandbox = "bwrap"
${extra}
[scheduler_auth]
type = "jwt_token"
token = "${token}"
`,
  );
  return file;
}

export function clientDistConfig(files: ClusterFiles, schedulerUrl: string, extra = ''): string {
  return `[dist]
scheduler_url = "${schedulerUrl}"
${extra}
[dist.auth]
type = "token"
token = "${files.clientToken}"
`;
}

/** The scheduler's status JSON, as a client with `clientToken` sees it. */
export async function clusterStatus(schedulerUrl: string, clientToken: string): Promise<ClusterStatus> {
  const res = await fetch(`${schedulerUrl}/api/v1/status`, {
    headers: { authorization: `Bearer ${clientToken}` },
  });
  if (res.status !== 200) throw new Error(`status answered ${res.status}: ${await res.text()}`);
  return (await res.json()) as ClusterStatus;
}
