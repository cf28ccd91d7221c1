/**
 * Coming from sccache-dist: a scheduler.conf, server.conf and client config written with
 * sccache-dist's names ([server_auth], [builder] type = "overlay" with build_dir and bwrap_path,
 * a server named by its address with a token from `generate-jwt-hs256-server-token --server`,
 * [cache.disk], [dist] cache_dir) reach a working loopback cluster with no renaming; only TLS
 * pinning (which sccache-dist lacks) is added. Also: every config problem at once, with "did you
 * mean", and `kiln-dist migrate-config`.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type ClusterFiles,
  clusterFiles,
  KILN_DIST,
  type ServerProcess,
  startServer,
  waitForWorkers,
} from './helpers/cluster.js';
import { KilnSandbox } from './helpers/kiln.js';
import { have } from './helpers/prereq.js';
import { freePort } from './helpers/servers/free-port.js';

const available = have('bwrap') && have('gcc');

let sb: KilnSandbox;
let files: ClusterFiles;
let env: NodeJS.ProcessEnv;
const servers: ServerProcess[] = [];

function dist(args: string[]) {
  return spawnSync(process.execPath, [KILN_DIST, ...args], { encoding: 'utf8', env });
}

describe.runIf(available)('an sccache-dist configuration, as it is', () => {
  let workerAddr: string;
  let schedulerUrl: string;
  let schedulerConf: string;
  let serverConf: string;

  beforeAll(async () => {
    sb = new KilnSandbox('native');
    files = clusterFiles(path.join(sb.dir, 'cluster'));
    const { NODE_EXTRA_CA_CERTS: _, ...base } = process.env;
    // sccache-dist's scheduler has no state_dir: kiln keeps its certificate under XDG_STATE_HOME.
    env = { ...base, XDG_STATE_HOME: path.join(sb.dir, 'state') };
    const sport = await freePort();
    workerAddr = `127.0.0.1:${await freePort()}`;
    schedulerConf = path.join(files.dir, 'scheduler.conf');
    fs.writeFileSync(
      schedulerConf,
      `public_addr = "127.0.0.1:${sport}"

[client_auth]
type = "token"
token = "${files.clientToken}"

[server_auth]
type = "jwt_hs256"
secret_key = "${files.secret}"
`,
    );
    const pin = dist(['tls', 'fingerprint', '--config', schedulerConf]).stdout.trim();
    expect(pin).toMatch(/^[0-9A-F:]{95}$/);
    const tokenFile = path.join(files.dir, 'server.token');
    const minted = dist([
      'auth',
      'generate-jwt-hs256-server-token',
      '--server',
      workerAddr,
      '--secret-key-file',
      files.secretFile,
      '--out',
      tokenFile,
    ]);
    expect(minted.status, minted.stderr).toBe(0);
    serverConf = path.join(files.dir, 'server.conf');
    fs.writeFileSync(
      serverConf,
      `public_addr = "${workerAddr}"
scheduler_url = "https://127.0.0.1:${sport}"
scheduler_cert_sha256 = "${pin}"
cache_dir = "${path.join(files.dir, 'server-cache')}"

[builder]
type = "overlay"
build_dir = "${path.join(files.dir, 'build')}"
bwrap_path = "/usr/bin/bwrap"

[scheduler_auth]
type = "jwt_token"
token = "${fs.readFileSync(tokenFile, 'utf8').trim()}"
`,
    );
    const scheduler = await startServer(['scheduler', '--config', schedulerConf], { env });
    servers.push(scheduler);
    schedulerUrl = scheduler.url;
    servers.push(await startServer(['worker', '--config', serverConf], { env }));
    await waitForWorkers(schedulerUrl, files.clientToken, 1);
    // The client config: sccache's [cache.disk] and [dist] cache_dir.
    delete sb.env.KILN_CACHE_DIR;
    sb.writeConfig(`[cache.disk]
dir = "${path.join(sb.dir, 'disk-cache')}"
size = "2G"

[dist]
scheduler_url = "${schedulerUrl}"
scheduler_cert_sha256 = "${pin}"
cache_dir = "${path.join(sb.dir, 'client-toolchains')}"
force_remote_build = true

[dist.auth]
type = "token"
token = "${files.clientToken}"
`);
  }, 120_000);

  afterAll(async () => {
    sb?.kiln(['--stop-server']);
    for (const s of servers) await s.stop();
    sb?.dispose();
  });

  it('the worker joins under its address, and both servers say which sccache-dist names they read', () => {
    const [scheduler, worker] = servers;
    expect(scheduler!.output()).toContain("sccache-dist's [server_auth] read as [worker_auth]");
    expect(worker!.output()).toContain('[builder] type = "overlay" read as sandbox = "bwrap"');
    expect(worker!.output()).toContain(`kiln-dist: worker ${workerAddr} listening on`);
  });

  it('compiles on the worker, with the client cache and toolchains where the sccache names say', async () => {
    sb.file('m.c', 'int twice(int x) { return 2 * x + N; }\n');
    let dist = 0;
    const end = Date.now() + 60_000;
    for (let i = 0; dist === 0 && Date.now() < end; i++) {
      const r = sb.kiln(['gcc', '-O2', `-DN=${i}`, '-c', 'm.c', '-o', 'm.o']);
      expect(r.status, r.stderr).toBe(0);
      const plain = sb.run(['gcc', '-O2', `-DN=${i}`, '-c', 'm.c', '-o', 'plain.o']);
      expect(plain.status).toBe(0);
      expect(sb.read('m.o').equals(sb.read('plain.o'))).toBe(true);
      const stats = sb.stats() as unknown as { stats: { distCompiles: Record<string, number> } };
      dist = stats.stats.distCompiles[workerAddr] ?? 0;
      if (dist === 0) await new Promise((r) => setTimeout(r, 500));
    }
    expect(dist).toBe(1);
    expect(fs.readdirSync(path.join(sb.dir, 'disk-cache')).sort()).toEqual(
      expect.arrayContaining(['r', 'stats.json']),
    );
    expect(fs.readdirSync(path.join(sb.dir, 'client-toolchains')).length).toBeGreaterThan(0);
    expect(fs.existsSync(path.join(sb.dir, '.cache', 'kiln'))).toBe(false);
  });

  it('migrate-config prints each file in kiln names, says what it renamed, and that kiln reads it', () => {
    const scheduler = dist(['migrate-config', schedulerConf]);
    expect(scheduler.status, scheduler.stderr).toBe(0);
    expect(scheduler.stdout).toContain("# sccache-dist's [server_auth] read as [worker_auth]");
    expect(scheduler.stdout).toContain('# kiln reads this file as it is');
    expect(scheduler.stdout).toMatch(/^\[worker_auth\]$/m);
    expect(scheduler.stdout).not.toMatch(/^\[server_auth\]$/m);
    const worker = dist(['migrate-config', serverConf]);
    expect(worker.stdout).toMatch(/^sandbox = "bwrap"$/m);
    expect(worker.stdout).toMatch(/^\[sandbox_config\]$/m);
    expect(worker.stdout).toContain(`work_dir = "${path.join(files.dir, 'build')}"`);
    expect(worker.stdout).toContain(`id = "${workerAddr}"`);
  });
});

describe('config mistakes, all at once', () => {
  const dir = fs.mkdtempSync('/tmp/kiln-migrate-');
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('lists every problem of a scheduler.toml in one run, with "did you mean" for a typo', () => {
    const file = path.join(dir, 'scheduler.toml');
    fs.writeFileSync(
      file,
      `public_adr = "127.0.0.1:10600"
worker_timeout = "30"
[client_auth]
type = "token"
token = "t"
[worker_auth]
type = "jwt_hs256"
secret_key = "k"
check_worker_ips = true
`,
    );
    const r = spawnSync(process.execPath, [KILN_DIST, 'scheduler', '--config', file], { encoding: 'utf8' });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`3 problems in ${file}:`);
    expect(r.stderr).toContain('unknown config key "public_adr" (did you mean "public_addr"?)');
    expect(r.stderr).toContain(
      'unknown config key "worker_auth.check_worker_ips" (did you mean "check_worker_ip"?)',
    );
    expect(r.stderr).toContain('invalid value for "worker_timeout": expected an integer, got string "30"');
    expect(r.stderr).not.toContain('    at ');
  });

  it('refuses a shared worker token in words that say what to do instead', () => {
    const file = path.join(dir, 'shared.conf');
    fs.writeFileSync(
      file,
      '[client_auth]\ntype = "token"\ntoken = "t"\n[server_auth]\ntype = "token"\ntoken = "shared"\n',
    );
    const r = spawnSync(process.execPath, [KILN_DIST, 'scheduler', '--config', file], { encoding: 'utf8' });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('invalid value for "server_auth.type"');
    expect(r.stderr).toContain('kiln gives every worker a token of its own');
    expect(r.stderr).toContain('generate-jwt-hs256-worker-token');
  });

  it('suggests the key a client config.toml meant', () => {
    const file = path.join(dir, 'client.toml');
    fs.writeFileSync(file, 'cache_sise = "1G"\n');
    const r = spawnSync(process.execPath, [path.join(path.dirname(KILN_DIST), 'kiln.js'), '-p'], {
      encoding: 'utf8',
      env: { ...process.env, KILN_CONFIG: file },
    });
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('unknown config key "cache_sise"');
    expect(r.stderr).toContain('(did you mean "cache_size"?)');
  });
});
