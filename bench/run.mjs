#!/usr/bin/env node
// `npm run bench`: real projects from Debian's sources built cold and warm with the plain
// compiler, kiln (native and Node client), ccache and sccache (when installed); single-file hit
// latency (a small file and duktape's amalgamation); `node -e 0` as the floor; the daemon's peak
// RSS. Prints medians of --runs runs (default 5). NODE_EXTRA_CA_CERTS is unset for every run:
// it adds ~50 ms to each node start on these machines and is not part of kiln.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeProjects } from './projects.mjs';
import { SERVERS as REMOTE_SERVERS } from './remote.mjs';
import { has, median, sh, timed } from './util.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..');
const work = path.join(here, '.work');
const argv = process.argv.slice(2);
const opt = (name, fallback) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : fallback;
};
const RUNS = Number(opt('--runs', '5'));
const JOBS = Number(opt('--jobs', String(os.cpus().length)));
const ONLY = opt('--only', 'zlib,yaml-cpp,latency,hotpath,cargo,cuda,scheduler,cluster,sandbox,remote').split(
  ',',
);
/** The tools to compare (default: every one installed). */
const TOOLS = opt('--tools', undefined)?.split(',');

const { NODE_EXTRA_CA_CERTS: _unused, ...baseEnv } = process.env;

/** A way to run compiles: its wrapper (undefined: plain), its environment and how to empty it. */
function tools() {
  const list = [];
  const kilnEnv = (name) => ({
    ...baseEnv,
    KILN_CACHE_DIR: path.join(work, `${name}-cache`),
    KILN_RUNTIME_DIR: path.join(work, `${name}-run`),
    KILN_IDLE_TIMEOUT: '0',
  });
  list.push({ name: 'plain', wrapper: undefined, env: baseEnv, clear() {} });
  for (const [name, bin] of [
    ['kiln', path.join(root, 'core', 'bin', 'kiln')],
    ['kiln-node', path.join(root, 'core', 'dist', 'cli', 'kiln.js')],
  ]) {
    const env = kilnEnv(name);
    list.push({
      name,
      wrapper: bin,
      env,
      clear() {
        spawnSync(bin, ['--stop-server'], { env, stdio: 'ignore' });
        fs.rmSync(env.KILN_CACHE_DIR, { recursive: true, force: true });
      },
      daemonPid() {
        try {
          return Number(fs.readFileSync(path.join(env.KILN_RUNTIME_DIR, 'daemon.pid'), 'utf8'));
        } catch {
          return undefined;
        }
      },
    });
  }
  if (has('ccache')) {
    const env = { ...baseEnv, CCACHE_DIR: path.join(work, 'ccache-cache') };
    list.push({
      name: 'ccache',
      wrapper: 'ccache',
      env,
      clear() {
        fs.rmSync(env.CCACHE_DIR, { recursive: true, force: true });
      },
    });
  }
  if (has('sccache')) {
    const env = { ...baseEnv, SCCACHE_DIR: path.join(work, 'sccache-cache'), SCCACHE_IDLE_TIMEOUT: '0' };
    list.push({
      name: 'sccache',
      wrapper: 'sccache',
      env,
      clear() {
        spawnSync('sccache', ['--stop-server'], { env, stdio: 'ignore' });
        fs.rmSync(env.SCCACHE_DIR, { recursive: true, force: true });
      },
    });
  }
  return TOOLS ? list.filter((t) => t.name === 'plain' || TOOLS.includes(t.name)) : list;
}

const peakRss = new Map();
function notePeakRss(tool) {
  const pid = tool.daemonPid?.();
  if (!pid) return;
  try {
    const kb = Number(/VmHWM:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);
    peakRss.set(tool.name, Math.max(peakRss.get(tool.name) ?? 0, kb / 1024));
  } catch {
    // The daemon exited.
  }
}

const projects = makeProjects({ work, jobs: JOBS, baseEnv });

/** kiln's hits and compiles so far (its --show-stats), to check that a warm build is all hits. */
function kilnCounts(tool) {
  const r = spawnSync(tool.wrapper, ['--show-stats', '--stats-format', 'json'], {
    env: tool.env,
    encoding: 'utf8',
  });
  const s = JSON.parse(r.stdout).stats;
  return { hits: s.hitsDirect + s.hitsPreprocessed, compiles: s.misses + s.compileFailed };
}

/**
 * Cold and warm builds of one project, the tools taking turns within each run (so a slow spell of
 * the machine falls on all of them alike).
 */
function benchProject(name, list) {
  const project = projects[name];
  const rows = { cold: {}, warm: {}, warmHits: {} };
  const dirs = new Map(list.map((tool) => [tool.name, project.prepare(tool)]));
  const cold = new Map(list.map((t) => [t.name, []]));
  const warm = new Map(list.map((t) => [t.name, []]));
  const counts = new Map(list.map((t) => [t.name, { hits: 0, compiles: 0 }]));
  for (let i = 0; i < RUNS; i++) {
    for (const tool of list) {
      const dir = dirs.get(tool.name);
      const isKiln = tool.name.startsWith('kiln');
      tool.clear();
      cold.get(tool.name).push(project.build(tool, dir));
      notePeakRss(tool);
      // plain has no cache: its warm build is another cold one.
      if (tool.name === 'plain') continue;
      const before = isKiln ? kilnCounts(tool) : undefined;
      warm.get(tool.name).push(project.build(tool, dir));
      if (before) {
        const after = kilnCounts(tool);
        counts.get(tool.name).hits += after.hits - before.hits;
        counts.get(tool.name).compiles += after.compiles - before.compiles;
      }
      notePeakRss(tool);
    }
  }
  for (const tool of list) {
    const n = tool.name;
    rows.cold[n] = median(cold.get(n));
    rows.warm[n] = n === 'plain' ? rows.cold[n] : median(warm.get(n));
    // The share of a warm build's compiles that were hits: anything under 100% is a lost hit.
    const c = counts.get(n);
    if (n.startsWith('kiln')) rows.warmHits[n] = (c.hits / (c.hits + c.compiles)) * 100;
    const rate = n.startsWith('kiln') ? `, warm hit rate ${rows.warmHits[n].toFixed(1)}%` : '';
    process.stderr.write(
      `  ${name} ${n}: cold ${rows.cold[n].toFixed(2)} s, warm ${rows.warm[n].toFixed(2)} s${rate}\n`,
    );
  }
  return rows;
}

/**
 * Median wall time of one command over `runs` runs after 5 warm-ups, by hyperfine when installed
 * (no shell), else by spawnSync.
 */
function latency(cmd, env, cwd, runs = Math.max(20, RUNS * 6)) {
  if (has('hyperfine')) {
    const out = path.join(work, 'hyperfine.json');
    sh('hyperfine', ['-N', '--warmup', '5', '--runs', String(runs), '--export-json', out, cmd.join(' ')], {
      env,
      cwd,
    });
    return JSON.parse(fs.readFileSync(out, 'utf8')).results[0].median;
  }
  const times = [];
  for (let i = 0; i < 5 + runs; i++) {
    const t = timed(cmd[0], cmd.slice(1), { env, cwd });
    if (i >= 5) times.push(t);
  }
  return median(times);
}

function benchLatency(list) {
  const dir = path.join(work, 'latency');
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(
    path.join(dir, 'small.c'),
    '#include <stdio.h>\nint main(void) { puts("hi"); return 0; }\n',
  );
  fs.copyFileSync(path.join(work, 'src', 'duktape', 'src', 'duktape.c'), path.join(dir, 'duktape.c'));
  for (const h of ['duktape.h', 'duk_config.h'])
    fs.copyFileSync(path.join(work, 'src', 'duktape', 'src', h), path.join(dir, h));
  // Old enough for every cache's "too new" guard.
  const old = new Date(Date.now() - 60_000);
  for (const f of fs.readdirSync(dir)) fs.utimesSync(path.join(dir, f), old, old);
  const rows = {};
  for (const file of ['small.c', 'duktape.c']) {
    rows[file] = {};
    for (const tool of list) {
      const cmd = [...(tool.wrapper ? [tool.wrapper] : []), 'gcc', '-O2', '-c', file, '-o', `${file}.o`];
      if (tool.wrapper) {
        tool.clear();
        sh(cmd[0], cmd.slice(1), { env: tool.env, cwd: dir }); // populate
        sh(cmd[0], cmd.slice(1), { env: tool.env, cwd: dir }); // direct-mode manifests settle
      }
      // The plain compiler has no hit: its time is the compile itself, so a few runs say enough.
      rows[file][tool.name] = latency(cmd, tool.env, dir, tool.wrapper ? undefined : 3);
      notePeakRss(tool);
      process.stderr.write(`  hit ${file} ${tool.name}: ${(rows[file][tool.name] * 1000).toFixed(1)} ms\n`);
    }
  }
  rows.floor = latency([process.execPath, '-e', '0'], baseEnv, dir);
  return rows;
}

async function main() {
  fs.mkdirSync(work, { recursive: true });
  sh('bash', [path.join(here, 'fetch-sources.sh'), 'zlib', 'yaml-cpp', 'duktape', 'leveldb'], {
    stdio: 'inherit',
  });
  const list = tools();
  const names = list.map((t) => t.name);
  process.stderr.write(`kiln bench: ${RUNS} runs, -j${JOBS}, tools: ${names.join(', ')}\n`);
  const results = {};
  for (const p of ['zlib', 'yaml-cpp']) if (ONLY.includes(p)) results[p] = benchProject(p, list);
  const lat = ONLY.includes('latency') ? benchLatency(list) : undefined;
  // CPU per hit, hits/s with 1/2/4 clients, 1 vs 2 cores, RSS with 100k entries (bench/hotpath.mjs).
  const hot = ONLY.includes('hotpath')
    ? await (await import('./hotpath.mjs')).benchHotPath({ runs: RUNS, work, tools: list })
    : undefined;
  // Rust (cargo, offline from Debian's crate sources) and CUDA (one nvcc file): bench/rust-cuda.mjs.
  const { benchCargo, benchCuda, cargoPrerequisites } = await import('./rust-cuda.mjs');
  const extraRows = {};
  if (ONLY.includes('cargo')) {
    const missing = has('cargo') ? cargoPrerequisites() : 'cargo not installed';
    if (missing) process.stderr.write(`  cargo rows skipped: ${missing}\n`);
    else extraRows['cargo build'] = benchCargo({ runs: Math.min(RUNS, 3), work, tools: list });
  }
  if (ONLY.includes('cuda') && has('nvcc'))
    extraRows['nvcc saxpy.cu'] = benchCuda({ runs: RUNS, work, tools: list });
  // Scheduler load: medians over runs of a real scheduler process with 1,000 simulated workers.
  const sched = [];
  if (ONLY.includes('scheduler')) {
    const { benchScheduler } = await import('./scheduler.mjs');
    for (let i = 0; i < Math.min(RUNS, 3); i++)
      sched.push(await benchScheduler({ workers: 1000, seconds: 8 }));
  }
  // zlib and leveldb through a loopback cluster (scheduler + two bwrap workers) against local builds
  // at the same -j (not yaml-cpp: it builds with -pedantic, which kiln keeps local).
  const cluster = ONLY.includes('cluster')
    ? await (await import('./cluster.mjs')).benchCluster({
        runs: RUNS,
        jobs: JOBS,
        work,
        root,
        baseEnv,
        projects: ['zlib', 'leveldb'],
      })
    : undefined;
  // cargo build through the loopback cluster (rustup resolver) against local cargo (bench/cluster.mjs).
  const { cargoPrerequisites: cargoMissing } = await import('./rust-cuda.mjs');
  const cargoCluster =
    ONLY.includes('cluster') && has('cargo') && has('rustup') && has('bwrap') && !cargoMissing()
      ? await (await import('./cluster.mjs')).benchCargoCluster({
          runs: Math.min(RUNS, 3),
          jobs: JOBS,
          work,
          root,
          baseEnv,
        })
      : undefined;
  // Per-job cost of bwrap and Docker on one small compile (bench/sandbox.mjs).
  const sandboxes = ONLY.includes('sandbox')
    ? await (await import('./sandbox.mjs')).benchSandboxes({ runs: RUNS, work, root })
    : undefined;
  // yaml-cpp's warm rebuild served by one remote tier alone vs the local disk (bench/remote.mjs).
  const remote = ONLY.includes('remote')
    ? await (await import('./remote.mjs')).benchRemote({
        runs: Math.min(RUNS, 3),
        jobs: JOBS,
        work,
        root,
        baseEnv,
        project: projects['yaml-cpp'],
        backends: ['redis', 's3', 'http', 'memcached', 'azure'].filter((b) => b in REMOTE_SERVERS),
      })
    : undefined;
  for (const t of list) t.clear();

  const col = (s) => String(s).padStart(11);
  const head = `${'benchmark'.padEnd(30)}${names.map(col).join('')}`;
  const lines = [head, '-'.repeat(head.length)];
  for (const [p, rows] of Object.entries(results)) {
    for (const mode of ['cold', 'warm']) {
      lines.push(
        `${`${p} build, ${mode} (s)`.padEnd(30)}${names.map((n) => col(rows[mode][n].toFixed(2))).join('')}`,
      );
    }
    const over = (n) => (rows.cold[n] / rows.cold.plain - 1) * 100;
    lines.push(
      `${`${p} cold overhead vs plain`.padEnd(30)}${names.map((n) => col(`${over(n).toFixed(1)}%`)).join('')}`,
    );
    const hits = (n) => (rows.warmHits[n] === undefined ? '-' : `${rows.warmHits[n].toFixed(1)}%`);
    lines.push(`${`${p} warm hit rate (kiln)`.padEnd(30)}${names.map((n) => col(hits(n))).join('')}`);
  }
  for (const [label, rows] of Object.entries(extraRows)) {
    for (const mode of ['cold', 'warm']) {
      const v = (n) => rows[mode][n];
      const cell = (n) => col(v(n) === undefined ? '-' : v(n).toFixed(v(n) < 0.1 ? 3 : 2));
      lines.push(`${`${label}, ${mode} (s)`.padEnd(30)}${names.map(cell).join('')}`);
    }
  }
  if (lat) {
    for (const file of ['small.c', 'duktape.c']) {
      lines.push(
        `${`hit ${file} (ms)`.padEnd(30)}${names.map((n) => col((lat[file][n] * 1000).toFixed(1))).join('')}`,
      );
    }
    lines.push(`${'node -e 0 (ms, the floor)'.padEnd(30)}${col((lat.floor * 1000).toFixed(1))}`);
  }
  lines.push(
    `${'daemon peak RSS (MB)'.padEnd(30)}${names.map((n) => col(peakRss.has(n) ? peakRss.get(n).toFixed(0) : '-')).join('')}`,
  );
  if (hot) {
    const cell = (v, digits) => col(v === undefined ? '-' : v.toFixed(digits));
    const row = (label, byTool, digits) =>
      lines.push(`${label.padEnd(30)}${names.map((n) => cell(byTool?.[n], digits)).join('')}`);
    row('CPU/hit small.c, server (ms)', hot.cpu['small.c server'], 2);
    row('CPU/hit small.c, all (ms)', hot.cpu['small.c total'], 2);
    row('CPU/hit C++ 490 hdrs, srv (ms)', hot.cpu['big.cpp server'], 2);
    row('CPU/hit C++ 490 hdrs, all (ms)', hot.cpu['big.cpp total'], 2);
    for (const c of ['1', '2', '4']) row(`C++ hits/s, ${c} client${c === '1' ? '' : 's'}`, hot.rate[c], 0);
    if (hot.cores['0']) {
      row('C++ hits/s, 4 clients, 1 core', hot.cores['0'], 0);
      row('C++ hits/s, 4 clients, 2 cores', hot.cores['0,1'], 0);
    }
    if (hot.rss) {
      const total = hot.rss.daemon + hot.rss.workers.reduce((a, b) => a + b, 0);
      lines.push(
        `${'RSS, 100k-entry cache (MB)'.padEnd(30)}${col(`${total.toFixed(0)}`)}  (daemon ${hot.rss.daemon.toFixed(0)} + ${hot.rss.workers.length} worker(s) ${hot.rss.workers.map((w) => w.toFixed(0)).join('+') || '-'}; cache ${(hot.rss.cacheBytes / 1e6).toFixed(0)} MB counted)`,
      );
    }
  }
  if (sched.length) {
    lines.push(
      `${'scheduler allocs/s, 1000 wkrs'.padEnd(30)}${col(median(sched.map((r) => r.allocsPerSec)).toFixed(0))}`,
    );
    lines.push(`${'scheduler peak RSS (MB)'.padEnd(30)}${col(median(sched.map((r) => r.rssMb)).toFixed(0))}`);
    // Node 20 has no process.execve: kiln-dist waits beside the scheduler it relaunched with V8 flags.
    const launcher = sched.filter((r) => r.launcherMb !== undefined).map((r) => r.launcherMb);
    if (launcher.length)
      lines.push(`${'+ launcher, private (MB)'.padEnd(30)}${col(median(launcher).toFixed(0))}`);
  }
  if (cluster) {
    const row = (label, value) => lines.push(`${label.padEnd(30)}${col(value)}`);
    for (const [name, p] of Object.entries(cluster.projects)) {
      row(`${name} local -j${JOBS} (s)`, p.plain.toFixed(2));
      row(`${name} kiln, no cluster (s)`, p.local.toFixed(2));
      row(`${name} loopback cluster (s)`, p.cluster.toFixed(2));
      row(`... vs local -j${JOBS}`, `${(p.cluster / p.plain).toFixed(2)}x`);
      row('... first build, packaging (s)', p.first.toFixed(2));
    }
  }
  if (cargoCluster) {
    const row = (label, value) => lines.push(`${label.padEnd(30)}${col(value)}`);
    row(`cargo local -j${JOBS} (s)`, cargoCluster.plain.toFixed(2));
    row('cargo kiln, no cluster (s)', cargoCluster.local.toFixed(2));
    row('cargo loopback cluster (s)', cargoCluster.cluster.toFixed(2));
    row(`... vs local -j${JOBS}`, `${(cargoCluster.cluster / cargoCluster.plain).toFixed(2)}x`);
    row('... library crates remote', String(cargoCluster.distributed));
  }
  if (remote) {
    const row = (label, value) => lines.push(`${label.padEnd(30)}${col(value)}`);
    for (const [name, r] of Object.entries(remote)) {
      if (name === 'redisGets') continue;
      row(`yaml-cpp warm, local disk (s)`, r.local.toFixed(2));
      row(`yaml-cpp warm, ${name} only (s)`, r.remote.toFixed(2));
      row(`... ${name} vs local disk`, `${(r.remote / r.local).toFixed(2)}x`);
      row(`... hit rate from ${name}`, `${r.hitRate.toFixed(1)}%`);
    }
    if (remote.redisGets) row('redis small gets/s (16 flying)', remote.redisGets.toFixed(0));
  }
  if (sandboxes) {
    const row = (label, value) => lines.push(`${label.padEnd(30)}${col(value)}`);
    row('sandbox job, plain gcc (ms)', sandboxes.plain.perJobMs.toFixed(1));
    row('sandbox job, bwrap (ms)', sandboxes.bwrap.perJobMs.toFixed(1));
    if (sandboxes.docker) {
      row('sandbox job, docker warm (ms)', sandboxes.docker.perJobMs.toFixed(1));
      row('... docker vs bwrap', `${(sandboxes.docker.perJobMs / sandboxes.bwrap.perJobMs).toFixed(2)}x`);
      row('... docker first job (ms)', sandboxes.docker.firstMs.toFixed(0));
    }
  }
  console.log(
    `\nkiln bench — medians of ${RUNS} runs, make/cmake -j${JOBS}, ${os.cpus().length} cores, ${os.cpus()[0]?.model}`,
  );
  console.log(
    'plain: the compiler alone (warm = cold); ccache in its default direct mode; NODE_EXTRA_CA_CERTS unset',
  );
  console.log(
    'cargo: warm = `cargo clean` then `cargo build` with the cache filled; dev profile, so the root crate is incremental and never cached\n',
  );
  console.log(lines.join('\n'));
}

await main();
