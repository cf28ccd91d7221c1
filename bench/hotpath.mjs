// `npm run bench -- --only hotpath`: the cost of a warm hit and how hits scale with parallel clients
// and cores, for kiln (native client), ccache and sccache, the tools taking turns in every run.
//   - CPU per hit: kiln's daemon (with its hit workers), sccache's server, and the whole call
//     (client processes included; for ccache that is all there is). Sequential hits of a small C
//     file and of a C++ file that includes about 490 headers. CPU from /proc (10 ms ticks, so
//     several hundred hits per run) and bash's `times` for the clients.
//   - Hits/s with 1, 2 and 4 clients hitting at once (400 hits of the C++ file).
//   - The same 4 clients on 1 and on 2 cores (taskset; kiln's daemon started under it, so it runs
//     as many hit workers as it may use cores).
//   - kiln's daemon RSS (daemon + workers) with 100,000 entries in the cache.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { median, sh } from './util.mjs';

const HEADERS = [
  'cmath',
  'csignal',
  'cassert',
  'cinttypes',
  'clocale',
  'ctime',
  'cwctype',
  'scoped_allocator',
  'typeindex',
  'unordered_set',
  'forward_list',
  'ratio',
  'system_error',
  'barrier',
  'latch',
  'semaphore',
  'stop_token',
  'numbers',
  'compare',
  'source_location',
  'syncstream',
  'memory_resource',
  'coroutine',
  'bit',
  'concepts',
  'version',
  'ext/rope',
  'tr1/unordered_map',
  'tr1/functional',
  'sys/stat.h',
  'sys/socket.h',
  'netinet/in.h',
  'arpa/inet.h',
  'unistd.h',
  'pthread.h',
  'filesystem',
  'variant',
  'optional',
  'any',
  'bitset',
  'numeric',
  'queue',
  'stack',
  'valarray',
  'complex',
  'condition_variable',
  'atomic',
  'locale',
  'codecvt',
  'execution',
  'shared_mutex',
  'charconv',
  'span',
  'ranges',
  'iostream',
  'vector',
  'string',
  'map',
  'regex',
  'unordered_map',
  'algorithm',
  'memory',
  'functional',
  'sstream',
  'fstream',
  'thread',
  'mutex',
  'chrono',
  'set',
  'deque',
  'list',
  'future',
  'random',
  'iomanip',
];
const BIG = `${HEADERS.map((h) => `#include <${h}>`).join('\n')}
int main() { std::map<std::string, int> m; m["a"] = 1; std::cout << m.size() << "\\n"; }
`;
const FILES = {
  'small.c': { text: '#include <stdio.h>\nint main(void) { puts("hi"); return 0; }\n', cc: ['gcc', '-O2'] },
  'big.cpp': { text: BIG, cc: ['g++', '-std=c++20', '-O2'] },
};
const TICK = 100; // CLK_TCK on Linux

const cpuTicks = (pid) => {
  try {
    const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return Number(f[11]) + Number(f[12]);
  } catch {
    return 0;
  }
};

/** The kiln daemon's pid and its hit workers', from --show-stats. */
function kilnPids(tool) {
  const r = spawnSync(tool.wrapper, ['--show-stats', '--stats-format', 'json'], {
    env: tool.env,
    encoding: 'utf8',
  });
  const d = JSON.parse(r.stdout).daemon;
  return [d.pid, ...d.workers.map((w) => w.pid)];
}

/** The server pids a tool keeps between calls (none for ccache). */
function serverPids(tool) {
  if (tool.name === 'kiln') return kilnPids(tool);
  if (tool.name === 'sccache') {
    const r = spawnSync('pgrep', ['-x', 'sccache'], { encoding: 'utf8' });
    return r.stdout.split('\n').filter(Boolean).map(Number);
  }
  return [];
}

const quote = (a) => `'${a.replace(/'/g, "'\\''")}'`;
const command = (tool, file, out) =>
  [tool.wrapper, ...FILES[file].cc, '-c', file, '-o', out].map(quote).join(' ');

/** Runs `n` calls one after another in bash; the CPU the calls took (bash's `times`, children). */
function loop(tool, dir, file, n, prefix = []) {
  const script = `for i in $(seq ${n}); do ${command(tool, file, 'loop.o')} >/dev/null; done; times`;
  const r = sh(prefix[0] ?? 'bash', [...prefix.slice(1), ...(prefix.length ? ['bash'] : []), '-c', script], {
    env: tool.env,
    cwd: dir,
  });
  const [, children] = r.stdout.trim().split('\n');
  const secs = children.split(/\s+/).map((t) => {
    const m = /(\d+)m([\d.]+)s/.exec(t);
    return Number(m[1]) * 60 + Number(m[2]);
  });
  return secs[0] + secs[1];
}

/** Fresh cache and server, the file stored, and a second call so direct-mode manifests settle. */
function fill(tool, dir, file, prefix = []) {
  tool.clear();
  for (let i = 0; i < 2; i++)
    sh(
      prefix[0] ?? tool.wrapper,
      [
        ...prefix.slice(1),
        ...(prefix.length ? [tool.wrapper] : []),
        ...FILES[file].cc,
        '-c',
        file,
        '-o',
        'fill.o',
      ],
      { env: tool.env, cwd: dir },
    );
}

function cpuPerHit(tool, dir, file, n) {
  fill(tool, dir, file);
  const pids = serverPids(tool);
  const before = pids.map(cpuTicks);
  const calls = loop(tool, dir, file, n);
  const server = pids.reduce((sum, pid, i) => sum + cpuTicks(pid) - before[i], 0) / TICK;
  return { server: (server / n) * 1000, total: ((server + calls) / n) * 1000 };
}

/** Wall seconds for `total` hits made by `clients` loops at once. */
async function parallelHits(tool, dir, file, clients, total, prefix = []) {
  fill(tool, dir, file, prefix);
  const per = Math.floor(total / clients);
  const t = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: clients }, (_, c) => {
      const script = `for i in $(seq ${per}); do ${command(tool, file, `p${c}.o`)} >/dev/null || exit 1; done`;
      const argv = [...prefix, 'bash', '-c', script];
      return new Promise((resolve, reject) => {
        const child = spawn(argv[0], argv.slice(1), { env: tool.env, cwd: dir, stdio: 'ignore' });
        child.on('error', reject);
        child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${tool.name} loop failed`))));
      });
    }),
  );
  return (per * clients) / (Number(process.hrtime.bigint() - t) / 1e9);
}

/** 100,000 entries of 1 KB in kiln's layout (r/<2 hex>/<key>), made once. */
function bigCache(cacheDir) {
  const marker = path.join(cacheDir, '.bench-100k');
  if (fs.existsSync(marker)) return;
  const blob = Buffer.alloc(1024, 7);
  for (let i = 0; i < 100_000; i++) {
    const key = i.toString(16).padStart(64, '0').split('').reverse().join('');
    const sub = path.join(cacheDir, 'r', key.slice(0, 2));
    if (i < 256) fs.mkdirSync(sub, { recursive: true });
    fs.writeFileSync(path.join(sub, key), blob);
  }
  fs.writeFileSync(marker, '');
}

const rssOf = (pid) => {
  try {
    return Number(/VmHWM:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) / 1024;
  } catch {
    return 0;
  }
};

async function rssWithBigCache(tool, dir, work) {
  const cacheDir = path.join(work, 'kiln-100k-cache');
  fs.mkdirSync(cacheDir, { recursive: true });
  bigCache(cacheDir);
  const env = { ...tool.env, KILN_CACHE_DIR: cacheDir, KILN_CACHE_SIZE: '100G' };
  spawnSync(tool.wrapper, ['--stop-server'], { env, stdio: 'ignore' });
  const t = { ...tool, env, clear() {} };
  for (const file of Object.keys(FILES)) {
    fill(t, dir, file);
    loop(t, dir, file, 100);
  }
  // The start-up rescan of 100,000 files runs in the background: let it finish.
  await new Promise((r) => setTimeout(r, 4000));
  const pids = kilnPids(t);
  const entries = JSON.parse(
    sh(tool.wrapper, ['--show-stats', '--stats-format', 'json'], { env }).stdout,
  ).cacheSize;
  const rss = pids.map(rssOf);
  spawnSync(tool.wrapper, ['--stop-server'], { env, stdio: 'ignore' });
  return { daemon: rss[0], workers: rss.slice(1), cacheBytes: entries };
}

export async function benchHotPath({ runs, work, tools }) {
  const dir = path.join(work, 'hotpath');
  fs.mkdirSync(dir, { recursive: true });
  const old = new Date(Date.now() - 60_000);
  for (const [name, { text }] of Object.entries(FILES)) {
    fs.writeFileSync(path.join(dir, name), text);
    fs.utimesSync(path.join(dir, name), old, old);
  }
  const list = tools.filter((t) => ['kiln', 'ccache', 'sccache'].includes(t.name));
  const cpu = {};
  const rate = {};
  const cores = {};
  const add = (table, key, name, value) => {
    table[key] ??= {};
    table[key][name] ??= [];
    table[key][name].push(value);
  };
  const hasTaskset = spawnSync('sh', ['-c', 'command -v taskset'], { stdio: 'ignore' }).status === 0;
  for (let r = 0; r < runs; r++) {
    for (const tool of list) {
      // sccache has no direct mode: each of its hits runs the preprocessor (about 0.3 s for the
      // C++ file here), so it makes a tenth of the calls.
      const share = tool.name === 'sccache' ? 10 : 1;
      for (const file of Object.keys(FILES)) {
        const c = cpuPerHit(tool, dir, file, (file === 'small.c' ? 400 : 300) / share);
        add(cpu, `${file} server`, tool.name, c.server);
        add(cpu, `${file} total`, tool.name, c.total);
      }
      for (const clients of [1, 2, 4])
        add(rate, `${clients}`, tool.name, await parallelHits(tool, dir, 'big.cpp', clients, 400 / share));
      if (hasTaskset)
        for (const cpus of ['0', '0,1'])
          add(
            cores,
            cpus,
            tool.name,
            await parallelHits(tool, dir, 'big.cpp', 4, 400, ['taskset', '-c', cpus]),
          );
      process.stderr.write(`  hot path run ${r + 1}/${runs}: ${tool.name} done\n`);
    }
  }
  const med = (table) =>
    Object.fromEntries(
      Object.entries(table).map(([k, byTool]) => [
        k,
        Object.fromEntries(Object.entries(byTool).map(([n, xs]) => [n, median(xs)])),
      ]),
    );
  const kiln = list.find((t) => t.name === 'kiln');
  const rss = kiln ? await rssWithBigCache(kiln, dir, work) : undefined;
  for (const t of list) t.clear();
  return { cpu: med(cpu), rate: med(rate), cores: med(cores), rss };
}
