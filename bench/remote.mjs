// Shared cache tiers (`--only remote`): a warm rebuild of a real project served by one remote tier
// alone (the local cache dir emptied before it) against the same rebuild from the local disk, for
// each backend whose server runs here (nginx WebDAV, redis-server, the S3 test server); and small
// entry gets per second through the daemon's own tier code against local Redis. Every server is
// started on 127.0.0.1 by this script and stopped at the end. The tools take turns within a run.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { has, median, sh, timed } from './util.mjs';

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function waitForPort(port, ms = 15_000) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const ok = await new Promise((resolve) => {
      const c = net.connect(port, '127.0.0.1');
      c.once('connect', () => {
        c.destroy();
        resolve(true);
      });
      c.once('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nothing listens on 127.0.0.1:${port}`);
}

/** Starts `argv` in the background; returns a stop function. */
function background(argv, opts = {}) {
  const proc = spawn(argv[0], argv.slice(1), { stdio: 'ignore', ...opts });
  return async () => {
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((r) => proc.once('exit', r));
    proc.kill('SIGTERM');
    await exited;
  };
}

export const SERVERS = {
  async http(dir) {
    const port = await freePort();
    fs.mkdirSync(path.join(dir, 'www', 'cache'), { recursive: true });
    fs.mkdirSync(path.join(dir, 'tmp'), { recursive: true });
    fs.writeFileSync(
      path.join(dir, 'nginx.conf'),
      `daemon off; master_process off; pid ${dir}/nginx.pid; error_log ${dir}/error.log warn;
events { worker_connections 256; }
http { access_log off; client_body_temp_path ${dir}/tmp;
  server { listen 127.0.0.1:${port}; root ${dir}/www;
    location /cache/ { dav_methods PUT DELETE MKCOL; create_full_put_path on; client_max_body_size 256m; } } }`,
    );
    const stop = background(['nginx', '-p', dir, '-c', path.join(dir, 'nginx.conf')]);
    await waitForPort(port);
    return { url: `http://127.0.0.1:${port}/cache/`, stop };
  },
  async redis(dir) {
    fs.mkdirSync(dir, { recursive: true });
    const port = await freePort();
    const stop = background(
      ['redis-server', '--bind', '127.0.0.1', '--port', String(port), '--save', '', '--appendonly', 'no'],
      { cwd: dir },
    );
    await waitForPort(port);
    return { url: `redis://127.0.0.1:${port}/0`, stop };
  },
  async s3(dir, root) {
    fs.mkdirSync(dir, { recursive: true });
    const bin = path.join(root, 'node_modules', '.bin', 's3rver');
    if (!fs.existsSync(bin)) throw new Error('s3rver is not installed (npm ci)');
    const port = await freePort();
    const stop = background(
      [
        bin,
        '--address',
        '127.0.0.1',
        '--port',
        String(port),
        '--directory',
        dir,
        '--silent',
        '--no-vhost-buckets',
        '--configure-bucket',
        'kiln',
      ],
      { env: { ...process.env } },
    );
    await waitForPort(port);
    return {
      url: `s3://kiln/bench`,
      attrs: `|endpoint=http://127.0.0.1:${port}|path_style=true|region=us-east-1`,
      env: { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER' },
      stop,
    };
  },
};

const SERVER_BINARIES = { http: 'nginx', redis: 'redis-server', s3: 'node' };

/**
 * For each backend: fill the local disk and the tier with one build, then alternate a warm
 * rebuild from the local disk and a warm rebuild with the local cache dir emptied (served by the
 * tier alone). Returns medians and the hit rates seen.
 */
export async function benchRemote({ runs, jobs, work, root, baseEnv, project, backends }) {
  const kiln = path.join(root, 'core', 'bin', 'kiln');
  const { registered } = await import(
    pathToFileURL(path.join(root, 'core', 'dist', 'cache', 'remote', 'registry.js')).href
  ).then((m) => ({ registered: m.BACKENDS.map((b) => b.type) }));
  const rows = {};
  for (const name of backends) {
    if (!registered.includes(name) || !has(SERVER_BINARIES[name])) {
      process.stderr.write(`  remote ${name}: skipped (backend or server not available here)\n`);
      continue;
    }
    const dir = path.join(work, `remote-${name}`);
    fs.rmSync(dir, { recursive: true, force: true });
    fs.mkdirSync(dir, { recursive: true });
    const server = await SERVERS[name](path.join(dir, 'server'), root);
    const env = {
      ...baseEnv,
      ...server.env,
      KILN_CACHE_DIR: path.join(dir, 'cache'),
      KILN_RUNTIME_DIR: path.join(dir, 'run'),
      KILN_IDLE_TIMEOUT: '0',
      KILN_REMOTE_STORAGE: `${server.url}${server.attrs ?? ''}`,
    };
    const tool = { name: `kiln-${name}`, wrapper: kiln, env };
    const stopDaemon = () => {
      const pidFile = path.join(env.KILN_RUNTIME_DIR, 'daemon.pid');
      const pid = fs.existsSync(pidFile) ? Number(fs.readFileSync(pidFile, 'utf8')) : undefined;
      spawnSync(kiln, ['--stop-server'], { env, stdio: 'ignore' });
      const end = Date.now() + 20_000;
      while (pid && fs.existsSync(`/proc/${pid}`) && Date.now() < end) spawnSync('sleep', ['0.05']);
    };
    const stats = () =>
      JSON.parse(sh(kiln, ['--show-stats', '--stats-format', 'json'], { env }).stdout).stats;
    try {
      const buildDir = project.prepare(tool);
      // Fill: the daemon's stop waits for its writes to the tier.
      project.build(tool, buildDir, jobs);
      stopDaemon();
      const local = [];
      const remote = [];
      let remoteHits = 0;
      let remoteMisses = 0;
      for (let i = 0; i < runs; i++) {
        local.push(project.build(tool, buildDir, jobs));
        stopDaemon();
        fs.rmSync(env.KILN_CACHE_DIR, { recursive: true, force: true });
        remote.push(project.build(tool, buildDir, jobs));
        const s = stats();
        remoteHits += s.hitsDirect + s.hitsPreprocessed;
        remoteMisses += s.misses;
        // The backfilled local disk serves the next local row.
        stopDaemon();
      }
      rows[name] = {
        local: median(local),
        remote: median(remote),
        hitRate: (remoteHits / Math.max(1, remoteHits + remoteMisses)) * 100,
      };
      process.stderr.write(
        `  remote ${name}: warm from local ${rows[name].local.toFixed(2)} s, from ${name} alone ${rows[name].remote.toFixed(2)} s (${(rows[name].remote / rows[name].local).toFixed(2)}x), hit rate ${rows[name].hitRate.toFixed(1)}%\n`,
      );
    } finally {
      stopDaemon();
      await server.stop();
    }
  }
  if (backends.includes('redis') && rows.redis !== undefined)
    rows.redisGets = await redisGets({ work, root });
  return rows;
}

/** Small-entry gets per second through the daemon's RemoteTier code against a local redis-server. */
async function redisGets({ work, root }) {
  const dir = path.join(work, 'remote-redis-gets');
  fs.mkdirSync(dir, { recursive: true });
  const server = await SERVERS.redis(dir);
  try {
    const imp = (rel) => import(pathToFileURL(path.join(root, 'core', 'dist', rel)).href);
    const { parseTier } = await imp('cache/remote/tier-config.js');
    const { RemoteTier } = await imp('cache/remote/tier.js');
    const { Stats } = await imp('stats/stats.js');
    const { silentLogger } = await imp('log.js');
    const tier = new RemoteTier(
      parseTier({ url: server.url }, 'bench'),
      new Stats(dir),
      silentLogger,
      process.env,
    );
    const N = 5000;
    const keys = Array.from({ length: 500 }, (_, i) => i.toString(16).padStart(64, '0'));
    for (const k of keys) tier.put('r', k, Buffer.alloc(2048, k));
    await tier.flush(30_000);
    const rates = [];
    for (let run = 0; run < 3; run++) {
      let next = 0;
      let hits = 0;
      const started = process.hrtime.bigint();
      // 16 in flight, as a parallel build's concurrent lookups would be.
      await Promise.all(
        Array.from({ length: 16 }, async () => {
          while (next < N) {
            const k = keys[next++ % keys.length];
            if (await tier.get('r', k)) hits++;
          }
        }),
      );
      const s = Number(process.hrtime.bigint() - started) / 1e9;
      if (hits !== N) throw new Error(`redis gets: ${hits} hits of ${N}`);
      rates.push(N / s);
    }
    await tier.close();
    return median(rates);
  } finally {
    await server.stop();
  }
}
