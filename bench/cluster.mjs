/**
 * Loopback cluster builds: a real `kiln-dist scheduler` and two `kiln-dist worker`s (bubblewrap)
 * on 127.0.0.1; zlib (C, make) and leveldb (C++, CMake's Makefiles) built at -jN through kiln from a cold
 * cache, against the plain compiler and kiln without a cluster at the same -j. kiln's daemon is
 * started before each timed build, as a user's runs between builds (idle, it does not exit). Each project's
 * compiler is packaged and sent to the workers by one untimed build first (reported apart): the
 * client keeps the package (`<cache_dir>/toolchains`, kept between runs) and the workers keep what
 * they received, as they would between real builds. After each cluster build it checks in the
 * stats that every compile ran on the cluster; at the end, in the workers' request logs that each
 * received each toolchain once, and in the scheduler's status that each holds them.
 * The cluster runs as the README's quickstart: HTTPS with the scheduler's generated certificate,
 * pinned by the workers and the client.
 * Run alone: node bench/cluster.mjs [--runs N] [--jobs N] [--projects zlib,leveldb]
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { makeProjects } from './projects.mjs';
import { median, sh } from './util.mjs';

const WORKERS = ['w1', 'w2'];

/** GET on a fresh connection: a kept-alive one may be closed by the server between the bench's polls. */
function getJson(url, token, ca) {
  return new Promise((resolve, reject) => {
    const opts = { agent: false, ca, headers: { authorization: `Bearer ${token}` } };
    const req = https.get(url, opts, (res) => {
      let body = '';
      res.on('data', (chunk) => (body += chunk));
      res.on('end', () => {
        if (res.statusCode === 200) resolve(JSON.parse(body));
        else reject(new Error(`${url}: ${res.statusCode} ${body}`));
      });
      res.on('error', reject);
    });
    req.on('error', reject);
  });
}

/** Starts `kiln-dist ARGS` and resolves with its URL once it says where it listens. */
function startServer(kilnDist, args, env) {
  const proc = spawn(process.execPath, [kilnDist, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const url = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`kiln-dist ${args[0]} did not start:\n${out}`)), 30_000);
    const onData = (chunk) => {
      out += chunk;
      const m = /listening on (https?:\/\/[^\s)]+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    };
    proc.stdout.on('data', onData);
    proc.stderr.on('data', onData);
    proc.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`kiln-dist ${args[0]} exited with ${code}:\n${out}`));
    });
  });
  const stop = () =>
    new Promise((resolve) => {
      if (proc.exitCode !== null || proc.signalCode !== null) return resolve();
      const kill = setTimeout(() => proc.kill('SIGKILL'), 10_000);
      proc.once('exit', () => {
        clearTimeout(kill);
        resolve();
      });
      proc.kill('SIGTERM');
    });
  return { proc, url, stop, output: () => out };
}

/** Writes the configs and starts the scheduler and the workers; `stop()` ends every one of them. */
export async function startCluster({ root, dir, env, workerExtra = '' }) {
  const kilnDist = path.join(root, 'core', 'dist', 'cli', 'kiln-dist.js');
  const { generateHs256Key, secretKeyFrom, workerToken } = await import(
    pathToFileURL(path.join(root, 'core', 'dist', 'cluster', 'auth.js')).href
  );
  const secret = generateHs256Key();
  fs.writeFileSync(path.join(dir, 'secret.key'), `${secret}\n`, { mode: 0o600 });
  const clientToken = `bench-${process.pid}`;
  const servers = [];
  const stop = async () => {
    for (const s of [...servers].reverse()) await s.stop();
  };
  try {
    const schedulerToml = path.join(dir, 'scheduler.toml');
    fs.writeFileSync(
      schedulerToml,
      `public_addr = "127.0.0.1:0"\nstate_dir = "scheduler-state"\n` +
        `[client_auth]\ntype = "token"\ntoken = "${clientToken}"\n` +
        `[worker_auth]\ntype = "jwt_hs256"\nsecret_key_file = "secret.key"\n`,
    );
    const pin = spawnSync(process.execPath, [kilnDist, 'tls', 'fingerprint', '--config', schedulerToml], {
      env,
      encoding: 'utf8',
    }).stdout.trim();
    const ca = fs.readFileSync(path.join(dir, 'scheduler-state', 'tls', 'cert.pem'), 'utf8');
    const scheduler = startServer(kilnDist, ['scheduler', '--config', schedulerToml], env);
    servers.push(scheduler);
    const schedulerUrl = await scheduler.url;
    for (const id of WORKERS) {
      const toml = path.join(dir, `${id}.toml`);
      fs.writeFileSync(
        toml,
        `id = "${id}"\npublic_addr = "127.0.0.1:0"\nscheduler_url = "${schedulerUrl}"\n` +
          `scheduler_cert_sha256 = "${pin}"\n` +
          // log_level info: fastify logs every request, which is how uploads are counted.
          `cache_dir = "${path.join(dir, id)}"\nsandbox = "bwrap"\nlog_level = "info"\n${workerExtra}` +
          `[scheduler_auth]\ntype = "jwt_token"\ntoken = "${await workerToken(secretKeyFrom(secret), id)}"\n`,
      );
      const worker = startServer(kilnDist, ['worker', '--config', toml], env);
      servers.push(worker);
      await worker.url;
    }
    const status = () => getJson(`${schedulerUrl}/api/v1/status`, clientToken, ca);
    for (let i = 0; (await status()).totals.workers < WORKERS.length; i++) {
      if (i > 200) throw new Error('the workers did not register');
      await new Promise((r) => setTimeout(r, 50));
    }
    let configs = 0;
    /** A client config file of its own for each call: `extra` lines go in its [dist] table. */
    const clientConfig = (extra) => {
      const file = path.join(dir, `client-${++configs}.toml`);
      fs.writeFileSync(
        file,
        `[dist]\nscheduler_url = "${schedulerUrl}"\nscheduler_cert_sha256 = "${pin}"\n${extra}\n[dist.auth]\ntype = "token"\ntoken = "${clientToken}"\n`,
      );
      return file;
    };
    /** Toolchain uploads each worker received, from its request log. */
    const uploads = () =>
      Object.fromEntries(
        WORKERS.map((id, i) => [
          id,
          servers[i + 1].output().match(/"method":"PUT","url":"[^"]*\/toolchains\//g)?.length ?? 0,
        ]),
      );
    return { clientConfig, status, uploads, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** A kiln client with its own daemon, cache and config; `cold()` stops it and empties the cache. */
export function kilnClient(root, work, name, configFile, baseEnv) {
  const bin = path.join(root, 'core', 'bin', 'kiln');
  const env = {
    ...baseEnv,
    KILN_CACHE_DIR: path.join(work, `${name}-cache`),
    KILN_RUNTIME_DIR: path.join(work, `${name}-run`),
    KILN_IDLE_TIMEOUT: '0',
    KILN_CONFIG: configFile,
  };
  return {
    cc: `${bin} gcc`,
    env,
    stop: () => spawnSync(bin, ['--stop-server'], { env, stdio: 'ignore' }),
    /** Starts the daemon ahead of a build, as a user's is between builds (it idles, it does not exit). */
    start: () => sh(bin, ['--start-server'], { env }),
    /** Stops the daemon and empties the cache; the packaged toolchains stay, like a user's would. */
    cold() {
      this.stop();
      fs.mkdirSync(env.KILN_CACHE_DIR, { recursive: true });
      for (const entry of fs.readdirSync(env.KILN_CACHE_DIR)) {
        if (entry !== 'toolchains')
          fs.rmSync(path.join(env.KILN_CACHE_DIR, entry), { recursive: true, force: true });
      }
    },
    stats: () => JSON.parse(sh(bin, ['--show-stats', '--stats-format', 'json'], { env }).stdout).stats,
  };
}

/** Waits until every worker reports `count` toolchains (heartbeats follow an upload at once). */
async function waitForToolchains(status, count) {
  for (let i = 0; i < 100; i++) {
    const workers = (await status()).pools.flatMap((p) => p.workers);
    if (workers.every((w) => w.toolchains >= count)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('the workers do not report the toolchain');
}

const sum = (record) => Object.values(record ?? {}).reduce((a, b) => a + b, 0);

/** Every miss compiled on the cluster, none kept local or failed over. Throws otherwise. */
function checkAllDistributed(stats) {
  const remote = sum(stats.distCompiles);
  if (remote !== stats.misses || sum(stats.distErrors) || sum(stats.distLocal)) {
    throw new Error(
      `not every compile was distributed: ${stats.misses} misses, ${remote} remote, local ${JSON.stringify(stats.distLocal)}, errors ${JSON.stringify(stats.distErrors)}`,
    );
  }
  return remote;
}

/**
 * For each project, medians of `runs` cold builds at -j<jobs>: plain gcc, kiln alone, kiln with the
 * loopback cluster (interleaved, so that drift on a noisy machine hits all three alike).
 */
export async function benchCluster({ runs, jobs, work, root, baseEnv, projects: names = ['zlib'] }) {
  const dir = path.join(work, 'cluster');
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  const projects = makeProjects({ work: dir, jobs, baseEnv });
  fs.symlinkSync(path.join(work, 'src'), path.join(dir, 'src'));
  const noDist = path.join(dir, 'no-dist.toml');
  fs.writeFileSync(noDist, '');
  const cluster = await startCluster({ root, dir, env: baseEnv });
  const local = kilnClient(root, dir, 'local', noDist, baseEnv);
  // The target is every compile on the cluster: none kept local as tiny.
  const remote = kilnClient(root, dir, 'remote', cluster.clientConfig('keep_tiny_local = false'), baseEnv);
  const kiln = path.join(root, 'core', 'bin', 'kiln');
  const tools = {
    plain: { name: 'plain', wrapper: undefined, env: baseEnv },
    local: { name: 'local', wrapper: kiln, env: local.env },
    cluster: { name: 'cluster', wrapper: kiln, env: remote.env },
  };
  const forced = { ...remote.env, KILN_CONFIG: cluster.clientConfig('force_remote_build = true') };
  try {
    const results = {};
    for (const name of names) {
      const project = projects[name];
      const dirs = Object.fromEntries(Object.entries(tools).map(([k, tool]) => [k, project.prepare(tool)]));
      // Untimed: packages the compiler (seconds) and sends it to the workers. force_remote_build
      // waits for the packaging, where the default compiles locally meanwhile; the timed builds use
      // the default. One job per worker at least, or the first worker to hold the toolchain would
      // get every job. The client keeps its packages between runs, as a user's would.
      remote.cold();
      const first = project.build(
        { ...tools.cluster, env: forced },
        dirs.cluster,
        Math.max(jobs, WORKERS.length),
      );
      const firstStats = remote.stats();
      await waitForToolchains(cluster.status, Object.keys(results).length + 1).catch((err) => {
        throw new Error(`${err.message}; the first build's stats: ${JSON.stringify(firstStats)}`);
      });
      const times = { plain: [], local: [], cluster: [] };
      const remoteCompiles = [];
      for (let i = 0; i < runs; i++) {
        times.plain.push(project.build(tools.plain, dirs.plain));
        local.cold();
        local.start();
        times.local.push(project.build(tools.local, dirs.local));
        remote.cold();
        remote.start();
        times.cluster.push(project.build(tools.cluster, dirs.cluster));
        remoteCompiles.push(checkAllDistributed(remote.stats()));
      }
      results[name] = {
        plain: median(times.plain),
        local: median(times.local),
        cluster: median(times.cluster),
        first,
        remoteCompiles: median(remoteCompiles),
      };
    }
    // One toolchain per project (gcc for zlib, c++ for leveldb): each sent once to each worker.
    const expected = names.length;
    const held = (await cluster.status()).pools.flatMap((p) => p.workers.map((w) => [w.id, w.toolchains]));
    const uploads = cluster.uploads();
    if (
      held.length !== WORKERS.length ||
      held.some(([, n]) => n !== expected) ||
      Object.values(uploads).some((n) => n !== expected)
    ) {
      throw new Error(
        `each worker should have received and hold ${expected} toolchain(s) once: held ${JSON.stringify(held)}, uploads ${JSON.stringify(uploads)}`,
      );
    }
    return { jobs, projects: results, uploads };
  } finally {
    local.stop();
    remote.stop();
    await cluster.stop();
  }
}

/**
 * `cargo build` (serde with derive, serde_json, regex: bench/rust-cuda.mjs's project) at -j<jobs>
 * from a cold cache: plain cargo, kiln alone, and kiln with the loopback cluster, whose workers name
 * the machine's rustup toolchain by version (@kiln/resolver-rustup; nothing is uploaded). The crates
 * come from a copy of Debian's registry beside the build, as a user's ~/.cargo registry would be:
 * crates under /usr share no directory with the build and would stay local. After each cluster
 * build it checks that every library crate ran on the cluster (proc-macros stay local).
 */
export async function benchCargoCluster({ runs, jobs, work, root, baseEnv }) {
  const { writeCargoProject } = await import('./rust-cuda.mjs');
  const dir = path.join(work, 'cargo-cluster');
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  const registry = path.join(dir, 'registry');
  fs.cpSync('/usr/share/cargo/registry', registry, { recursive: true, dereference: true });
  const rustup = spawnSync('sh', ['-c', 'command -v rustup'], { encoding: 'utf8' }).stdout.trim();
  const rustupHome = process.env.RUSTUP_HOME ?? path.join(os.homedir(), '.rustup');
  const cluster = await startCluster({
    root,
    dir,
    env: baseEnv,
    workerExtra: `resolvers = ["rustup"]\n[resolver_config.rustup]\nrustup = "${rustup}"\nrustup_home = "${rustupHome}"\n`,
  });
  const noDist = path.join(dir, 'no-dist.toml');
  fs.writeFileSync(noDist, '');
  const local = kilnClient(root, dir, 'local', noDist, baseEnv);
  const remote = kilnClient(root, dir, 'remote', cluster.clientConfig('resolvers = ["rustup"]'), baseEnv);
  const kiln = path.join(root, 'core', 'bin', 'kiln');
  const setups = { plain: undefined, local, cluster: remote };
  const dirs = {};
  for (const name of Object.keys(setups)) {
    dirs[name] = path.join(dir, `app-${name}`);
    writeCargoProject(dirs[name], registry);
  }
  const cargoEnv = (client) => ({
    ...(client ? client.env : baseEnv),
    CARGO_HOME: path.join(dir, 'cargo-home'),
    CARGO_TERM_COLOR: 'never',
    ...(client && { RUSTC_WRAPPER: kiln }),
  });
  const build = (name) => {
    const env = cargoEnv(setups[name]);
    sh('cargo', ['clean'], { cwd: dirs[name], env });
    const t = process.hrtime.bigint();
    sh('cargo', ['build', `-j${jobs}`], { cwd: dirs[name], env });
    return Number(process.hrtime.bigint() - t) / 1e9;
  };
  try {
    const times = { plain: [], local: [], cluster: [] };
    const distributed = [];
    for (let i = 0; i < runs; i++) {
      times.plain.push(build('plain'));
      local.cold();
      local.start();
      times.local.push(build('local'));
      remote.cold();
      remote.start();
      times.cluster.push(build('cluster'));
      const s = remote.stats();
      const libraries = fs
        .readdirSync(path.join(dirs.cluster, 'target', 'debug', 'deps'))
        .filter((f) => f.endsWith('.rlib')).length;
      const remoteCrates = sum(s.distCompiles);
      if (remoteCrates !== libraries || sum(s.distErrors))
        throw new Error(
          `not every library crate was distributed: ${remoteCrates} of ${libraries}, local ${JSON.stringify(s.distLocal)}, errors ${JSON.stringify(s.distErrors)}`,
        );
      distributed.push(remoteCrates);
      process.stderr.write(
        `  cargo cluster run ${i + 1}: plain ${times.plain.at(-1).toFixed(2)} s, kiln ${times.local.at(-1).toFixed(2)} s, cluster ${times.cluster.at(-1).toFixed(2)} s (${remoteCrates} of ${libraries} library crates remote)\n`,
      );
    }
    return {
      jobs,
      plain: median(times.plain),
      local: median(times.local),
      cluster: median(times.cluster),
      distributed: median(distributed),
    };
  } finally {
    local.stop();
    remote.stop();
    await cluster.stop();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const arg = (n, d) => {
    const i = process.argv.indexOf(n);
    return i > 0 ? process.argv[i + 1] : d;
  };
  const here = path.dirname(fileURLToPath(import.meta.url));
  const { NODE_EXTRA_CA_CERTS: _, ...baseEnv } = process.env;
  const jobs = Number(arg('--jobs', os.cpus().length));
  const work = path.join(here, '.work');
  const projects = arg('--projects', 'zlib,leveldb').split(',');
  if (projects.includes('cargo')) {
    const c = await benchCargoCluster({
      runs: Number(arg('--runs', 3)),
      jobs,
      work,
      root: path.resolve(here, '..'),
      baseEnv,
    });
    console.log(
      `cargo build -j${jobs}, cold, medians: plain ${c.plain.toFixed(2)} s, kiln local ${c.local.toFixed(2)} s, ` +
        `loopback cluster ${c.cluster.toFixed(2)} s (${(c.cluster / c.plain).toFixed(2)}x plain); ${c.distributed} library crates on the cluster per build`,
    );
    projects.splice(projects.indexOf('cargo'), 1);
    if (projects.length === 0) process.exit(0);
  }
  sh('bash', [path.join(here, 'fetch-sources.sh'), ...projects], { stdio: 'inherit' });
  const r = await benchCluster({
    runs: Number(arg('--runs', 3)),
    jobs,
    work,
    root: path.resolve(here, '..'),
    baseEnv,
    projects,
  });
  for (const [name, p] of Object.entries(r.projects)) {
    console.log(
      `${name} -j${jobs}, medians: plain ${p.plain.toFixed(2)} s, kiln local ${p.local.toFixed(2)} s, ` +
        `loopback cluster ${p.cluster.toFixed(2)} s (${(p.cluster / p.plain).toFixed(2)}x plain; ` +
        `first build, packaging + uploads: ${p.first.toFixed(2)} s); ${p.remoteCompiles} compiles on the cluster per build`,
    );
  }
  console.log(`toolchain uploads per worker: ${JSON.stringify(r.uploads)}`);
}
