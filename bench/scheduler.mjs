/**
 * Scheduler load: a real `kiln-dist scheduler` process, 1,000 simulated workers registered by
 * real heartbeats, then as many allocations per second as 64 concurrent keep-alive clients get
 * through over loopback. Prints allocations/s and the scheduler's peak RSS. On Node 20 the scheduler
 * runs in a child of `kiln-dist` (relaunched with its V8 flags): the peak is the child's, and the
 * launcher's private memory is reported beside it.
 * Run alone: node bench/scheduler.mjs [--workers N] [--seconds S]
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const kilnDist = path.join(root, 'core', 'dist', 'cli', 'kiln-dist.js');
const core = (p) => import(pathToFileURL(path.join(root, 'core', 'dist', p)).href);

/** A process's memory from /proc, in MB: `key` is VmHWM (status) or a smaps_rollup field. */
function memMb(pid, key) {
  const file = key.startsWith('Vm') ? 'status' : 'smaps_rollup';
  const text = fs.readFileSync(`/proc/${pid}/${file}`, 'utf8');
  return Number(new RegExp(`${key}:\\s+(\\d+)`).exec(text)?.[1] ?? 0) / 1024;
}

const childrenOf = (pid) =>
  fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').split(' ').filter(Boolean).map(Number);

export async function benchScheduler({ workers = 1000, seconds = 10, concurrency = 64 } = {}) {
  const { generateHs256Key, secretKeyFrom, workerToken } = await core('cluster/auth.js');
  const { Agent, request } = await import(
    pathToFileURL(path.join(root, 'node_modules', 'undici', 'index.js')).href
  );
  const dir = fs.mkdtempSync('/tmp/kiln-sched-bench-');
  const secret = generateHs256Key();
  fs.writeFileSync(
    path.join(dir, 'scheduler.toml'),
    // Plain HTTP: this measures the scheduler's own work per allocation, and the fake workers
    // advertise http URLs, which only an insecure scheduler accepts.
    `public_addr = "127.0.0.1:0"\ninsecure = true\nworker_timeout = 120\n[client_auth]\ntype = "token"\ntoken = "bench"\n[worker_auth]\ntype = "jwt_hs256"\nsecret_key = "${secret}"\n`,
  );
  const { NODE_EXTRA_CA_CERTS: _, ...env } = process.env;
  const proc = spawn(
    process.execPath,
    [kilnDist, 'scheduler', '--config', path.join(dir, 'scheduler.toml')],
    {
      env,
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  const url = await new Promise((resolve, reject) => {
    let out = '';
    proc.stderr.on('data', (c) => {
      out += c;
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) resolve(m[1]);
    });
    proc.on('exit', () => reject(new Error(out)));
  });
  // Without process.execve (Node 20) the server is the launcher's only child.
  const serverPid = childrenOf(proc.pid)[0] ?? proc.pid;
  const agent = new Agent({ connections: concurrency, keepAliveTimeout: 30_000 });
  const key = secretKeyFrom(secret);
  const triples = ['x86_64-unknown-linux-gnu', 'aarch64-unknown-linux-gnu'];
  const jobKey = Buffer.alloc(32, 7).toString('base64url');
  const digest = (i) => (i % 50).toString(16).padStart(64, '0');
  const post = async (p, body, token) => {
    const res = await request(`${url}/api/v1${p}`, {
      method: 'POST',
      dispatcher: agent,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    const text = await res.body.text();
    if (res.statusCode !== 200) throw new Error(`${p}: ${res.statusCode} ${text}`);
    return JSON.parse(text);
  };
  // Register the simulated workers, 32 at a time.
  for (let i = 0; i < workers; i += 32) {
    await Promise.all(
      Array.from({ length: Math.min(32, workers - i) }, async (_, k) => {
        const id = `sim-${i + k}`;
        await post(
          '/workers/heartbeat',
          {
            id,
            url: `http://10.0.${(i + k) >> 8}.${(i + k) & 255}:10601`,
            hostTriple: triples[(i + k) % 2],
            os: 'Linux',
            cpuModel: 'simulated',
            cpus: 16,
            memoryBytes: 64e9,
            maxJobs: 4096,
            sandbox: 'bwrap',
            resolvers: ['archive'],
            toolchains: [digest(i + k), digest(i + k + 1)],
            toolchainUploads: 0,
            runningJobs: [],
            jobKey,
            version: 'bench',
          },
          await workerToken(key, id),
        );
      }),
    );
  }
  let done = 0;
  let noCapacity = 0;
  const end = Date.now() + seconds * 1000;
  const started = Date.now();
  await Promise.all(
    Array.from({ length: concurrency }, async (_, c) => {
      let n = c;
      while (Date.now() < end) {
        const r = await post(
          '/jobs',
          { toolchain: { kind: 'archive', digest: digest(n++), hostTriples: [triples[n % 2]] } },
          'bench',
        );
        if (r.status !== 'assigned') noCapacity++;
        done++;
      }
    }),
  );
  const elapsed = (Date.now() - started) / 1000;
  const rssMb = memMb(serverPid, 'VmHWM');
  const launcherMb = serverPid === proc.pid ? undefined : memMb(proc.pid, 'Private_Dirty');
  proc.kill('SIGTERM');
  await agent.close();
  fs.rmSync(dir, { recursive: true, force: true });
  return { workers, allocsPerSec: done / elapsed, noCapacity, rssMb, launcherMb };
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const arg = (n, d) => {
    const i = process.argv.indexOf(n);
    return i > 0 ? Number(process.argv[i + 1]) : d;
  };
  const r = await benchScheduler({ workers: arg('--workers', 1000), seconds: arg('--seconds', 10) });
  console.log(
    `scheduler: ${r.workers} workers, ${r.allocsPerSec.toFixed(0)} allocations/s (${r.noCapacity} no-capacity), peak RSS ${r.rssMb.toFixed(0)} MB${r.launcherMb === undefined ? '' : ` (+ launcher, private: ${r.launcherMb.toFixed(0)} MB)`}`,
  );
}
