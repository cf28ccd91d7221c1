/**
 * A real loopback cluster for tests: `kiln-dist scheduler` and `kiln-dist worker` processes with
 * generated configs, ports picked by the OS. It runs as the README's quickstart does: HTTPS with
 * the certificate the scheduler generates, pinned by its fingerprint; secrets in files.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ClusterStatus } from '../../core/src/cluster/api.js';
import { HttpTransport } from '../../core/src/cluster/http-transport.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const KILN_DIST = path.join(root, 'core', 'dist', 'cli', 'kiln-dist.js');

export interface ServerProcess {
  readonly url: string;
  /** The SHA-256 of the certificate it serves (a scheduler says it at start); undefined for http. */
  readonly fingerprint: string | undefined;
  readonly proc: ChildProcess;
  output(): string;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/** Server URL → the fingerprint it announced, for clusterStatus. */
const announced = new Map<string, string>();

export function kilnDist(args: readonly string[], node = process.execPath): string {
  const { NODE_EXTRA_CA_CERTS: _, ...env } = process.env;
  const r = spawnSync(node, [KILN_DIST, ...args], { encoding: 'utf8', env });
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
      const m = /listening on (https?:\/\/[^\s)]+)(?: \(certificate SHA-256 ([0-9A-F:]+))?/.exec(out);
      if (m) {
        clearTimeout(timer);
        if (m[2]) announced.set(m[1]!, m[2]);
        resolve({
          url: m[1]!,
          fingerprint: m[2],
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
  /** The scheduler's HS256 key, also in `secretFile` (0600). */
  readonly secret: string;
  readonly secretFile: string;
  readonly clientToken: string;
  /** The scheduler certificate's fingerprint, known once writeSchedulerConfig ran. */
  schedulerPin?: string;
}

export function clusterFiles(dir: string): ClusterFiles {
  fs.mkdirSync(dir, { recursive: true });
  const secretFile = path.join(dir, 'secret.key');
  fs.rmSync(secretFile, { force: true });
  kilnDist(['auth', 'generate-jwt-hs256-key', '--out', secretFile]);
  return {
    dir,
    secret: fs.readFileSync(secretFile, 'utf8').trim(),
    secretFile,
    clientToken: `client-${path.basename(dir)}`,
  };
}

/**
 * scheduler.toml with its secrets in files and its certificate in `dir/scheduler-state` (made
 * now, so that workers and clients can pin it before it starts; kept across restarts).
 */
export function writeSchedulerConfig(files: ClusterFiles, port = 0, extra = ''): string {
  const file = path.join(files.dir, 'scheduler.toml');
  const tokenFile = path.join(files.dir, 'client.token');
  fs.writeFileSync(tokenFile, `${files.clientToken}\n`, { mode: 0o600 });
  fs.writeFileSync(
    file,
    `public_addr = "127.0.0.1:${port}"
worker_timeout = 3
state_dir = "scheduler-state"
${extra}
[client_auth]
type = "token"
token_file = "client.token"
[worker_auth]
type = "jwt_hs256"
secret_key_file = "secret.key"
`,
  );
  if (!/^insecure = true/m.test(extra))
    files.schedulerPin = kilnDist(['tls', 'fingerprint', '--config', file]);
  return file;
}

/**
 * A worker config that pins the scheduler's certificate, with a fresh token in `dir/ID.token`;
 * `max_jobs = 2` and `sandbox = "bwrap"` unless `extra` sets them.
 */
export function writeWorkerConfig(files: ClusterFiles, id: string, schedulerUrl: string, extra = ''): string {
  const tokenFile = path.join(files.dir, `${id}.token`);
  kilnDist([
    'auth',
    'rotate-worker-token',
    '--worker',
    id,
    '--secret-key-file',
    files.secretFile,
    '--out',
    tokenFile,
  ]);
  const file = path.join(files.dir, `${id}.toml`);
  fs.writeFileSync(
    file,
    `id = "${id}"
public_addr = "127.0.0.1:0"
scheduler_url = "${schedulerUrl}"
${files.schedulerPin ? `scheduler_cert_sha256 = "${files.schedulerPin}"` : ''}
cache_dir = "${path.join(files.dir, id)}"
${/^max_jobs\s*=/m.test(extra) ? '' : 'max_jobs = 2'}
${/^sandbox\s*=/m.test(extra) ? '' : 'sandbox = "bwrap"'}
${extra}
[scheduler_auth]
type = "jwt_token"
token_file = "${tokenFile}"
`,
  );
  return file;
}

export function clientDistConfig(files: ClusterFiles, schedulerUrl: string, extra = ''): string {
  return `[dist]
scheduler_url = "${schedulerUrl}"
${files.schedulerPin ? `scheduler_cert_sha256 = "${files.schedulerPin}"` : ''}
${extra}
[dist.auth]
type = "token"
token = "${files.clientToken}"
`;
}

/** The scheduler's status JSON, as a client with `clientToken` sees it. */
export async function clusterStatus(schedulerUrl: string, clientToken: string): Promise<ClusterStatus> {
  const pin = announced.get(schedulerUrl);
  const http = new HttpTransport({ insecure: schedulerUrl.startsWith('http:') });
  try {
    const res = await http.exchange(`${schedulerUrl}/api/v1/status`, {
      method: 'GET',
      headers: { authorization: `Bearer ${clientToken}` },
      timeoutMs: 10_000,
      ...(pin ? { pin } : {}),
    });
    if (res.status !== 200) throw new Error(`status answered ${res.status}: ${res.body.toString()}`);
    return JSON.parse(res.body.toString()) as ClusterStatus;
  } finally {
    http.close();
  }
}

/** Waits until at least `n` workers are in the scheduler's pools; its status then. Throws after `timeoutMs`. */
export async function waitForWorkers(
  schedulerUrl: string,
  clientToken: string,
  n: number,
  timeoutMs = 20_000,
): Promise<ClusterStatus> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const status = await clusterStatus(schedulerUrl, clientToken);
    if (status.totals.workers >= n) return status;
    if (Date.now() > end)
      throw new Error(`${status.totals.workers} of ${n} workers joined in ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The certificates a cluster in `files.dir` generated: the scheduler's and every worker's. */
export function clusterCertificates(files: ClusterFiles): string[] {
  const dirs = [
    path.join(files.dir, 'scheduler-state'),
    ...fs.readdirSync(files.dir).map((d) => path.join(files.dir, d)),
  ];
  return dirs
    .map((d) => path.join(d, 'tls', 'cert.pem'))
    .filter((f) => fs.existsSync(f))
    .map((f) => fs.readFileSync(f, 'utf8'));
}

/**
 * fetch for tests that talk raw HTTP to a cluster's servers: it trusts exactly the certificates
 * the cluster generated (read at each call, so workers started later count too).
 */
export function clusterFetch(files: ClusterFiles) {
  return async (url: string, init: Parameters<typeof import('undici').fetch>[1] = {}) => {
    const { Agent, fetch } = await import('undici');
    const dispatcher = new Agent({ connect: { ca: clusterCertificates(files) } });
    try {
      const res = await fetch(url, { ...init, dispatcher });
      const text = await res.text();
      return { status: res.status, text };
    } finally {
      await dispatcher.close();
    }
  };
}
