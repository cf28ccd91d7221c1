/**
 * Cluster trouble is said, once, where it can be read without breaking a build: a notice on a
 * terminal's stderr (the client run under `script`, a pty), a warning in daemon.log, a "Cluster"
 * line in --show-stats; through a pipe, a compile's stderr stays exactly the compiler's. And one
 * package per real compiler binary, whatever name it is called by.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type ClusterFiles,
  clientDistConfig,
  clusterFetch,
  clusterFiles,
  clusterStatus,
  kilnDist,
  type ServerProcess,
  startServer,
  waitForWorkers,
  writeSchedulerConfig,
  writeWorkerConfig,
} from './helpers/cluster.js';
import { KilnSandbox } from './helpers/kiln.js';
import { have } from './helpers/prereq.js';
import { freePort } from './helpers/servers/free-port.js';

let sb: KilnSandbox;
let files: ClusterFiles;
let scheduler: ServerProcess;
let worker: ServerProcess;

beforeAll(async () => {
  have('bwrap');
  have('gcc');
  have('script');
  sb = new KilnSandbox();
  files = clusterFiles(path.join(sb.dir, 'cluster'));
  scheduler = await startServer(['scheduler', '--config', writeSchedulerConfig(files)]);
  worker = await startServer(['worker', '--config', writeWorkerConfig(files, 'w1', scheduler.url)]);
  await waitForWorkers(scheduler.url, files.clientToken, 1);
}, 120_000);

afterAll(async () => {
  sb?.stopAndWait();
  await worker?.stop();
  await scheduler?.stop();
  sb?.dispose();
});

/** A daemon of its own on `config` (a fresh cache dir, so packaging starts afresh). */
function daemonWith(name: string, config: string): NodeJS.ProcessEnv {
  sb.stopAndWait();
  const file = path.join(sb.dir, `${name}.toml`);
  fs.writeFileSync(file, config);
  return { ...sb.env, KILN_CONFIG: file, KILN_CACHE_DIR: path.join(sb.dir, `cache-${name}`) };
}

let sources = 0;
/** A new source file each time, so that no compile is a cache hit. */
function source(ext = 'c'): string {
  const name = `n${++sources}.${ext}`;
  sb.file(name, `int f${sources}(int x) { return x * ${sources}; }\n`);
  return name;
}

/** The client through a pipe: stdout and stderr must be the compiler's own (none). */
function piped(env: NodeJS.ProcessEnv, cc = 'gcc') {
  const src = source();
  const r = sb.kiln([cc, '-O2', '-c', src], { env });
  expect(r.status, r.stderr).toBe(0);
  expect(r.stderr).toBe('');
  expect(r.stdout).toBe('');
  return src;
}

/** The client on a terminal (under `script`): what the terminal showed, \r\n made \n. */
function onTerminal(env: NodeJS.ProcessEnv, src = source()): string {
  const r = spawnSync('script', ['-qec', `${sb.client} gcc -O2 -c ${src}`, '/dev/null'], {
    cwd: sb.work,
    env,
    encoding: 'utf8',
  });
  expect(r.status, r.stdout).toBe(0);
  return r.stdout.replace(/\r\n/g, '\n');
}

function clusterLine(env: NodeJS.ProcessEnv): { text: string; json: unknown } {
  const text = sb.kiln(['--show-stats'], { env }).stdout;
  const json = JSON.parse(sb.kiln(['--show-stats', '--stats-format', 'json'], { env }).stdout).cluster;
  return { text: /^Cluster {33}(.*)$/m.exec(text)?.[1] ?? '(no Cluster line)', json };
}

const count = (haystack: string, needle: string) => haystack.split(needle).length - 1;

describe('cluster trouble, said once', () => {
  it('a wrong client token: the terminal is told once, a pipe never, the log and --show-stats say it', () => {
    const env = daemonWith(
      'token',
      clientDistConfig({ ...files, clientToken: 'wrong' }, scheduler.url, 'force_remote_build = true'),
    );
    const logStart = sb.log().length;
    piped(env);
    piped(env);
    const problem =
      'the scheduler refused the client token (401): check [dist.auth] token / KILN_DIST_CLIENT_TOKEN';
    const shown = source();
    const first = onTerminal(env, shown);
    expect(first).toBe(
      'kiln: packaging /usr/bin/gcc for the cluster (once per compiler, a few seconds)\n' +
        `kiln: the cluster is not used: ${problem}; compiling locally\n`,
    );
    expect(onTerminal(env)).toBe('');
    // The compile that showed the notice was stored without it: its hit prints nothing.
    const hit = sb.kiln(['gcc', '-O2', '-c', shown], { env });
    expect([hit.status, hit.stdout, hit.stderr]).toEqual([0, '', '']);
    const stats = JSON.parse(sb.kiln(['--show-stats', '--stats-format', 'json'], { env }).stdout).stats;
    expect(stats.hitsDirect + stats.hitsPreprocessed).toBe(1);
    const log = sb.log().slice(logStart);
    expect(count(log, `the cluster is not used: ${problem}`)).toBe(1);
    expect(clusterLine(env)).toEqual({ text: `not used: ${problem}`, json: `not used: ${problem}` });
  });

  it('a scheduler nobody listens at: names scheduler_url and kiln-dist scheduler', async () => {
    const dead = `https://127.0.0.1:${await freePort()}`;
    const env = daemonWith('dead', clientDistConfig(files, dead, 'force_remote_build = true'));
    piped(env);
    const problem = `the scheduler at ${dead} is unreachable (connect ECONNREFUSED ${dead.slice(8)}): check [dist] scheduler_url and that \`kiln-dist scheduler\` is running`;
    expect(onTerminal(env)).toBe(
      'kiln: packaging /usr/bin/gcc for the cluster (once per compiler, a few seconds)\n' +
        `kiln: the cluster is not used: ${problem}; compiling locally\n`,
    );
    expect(clusterLine(env).text).toBe(`not used: ${problem}`);
  });

  it('a wrong certificate pin: names scheduler_cert_sha256', () => {
    const wrongPin = Array.from({ length: 32 }, () => 'AB').join(':');
    const env = daemonWith(
      'pin',
      clientDistConfig({ ...files, schedulerPin: wrongPin }, scheduler.url, 'force_remote_build = true'),
    );
    piped(env);
    const problem =
      "the scheduler's TLS certificate does not match the pin: check [dist] scheduler_cert_sha256";
    expect(onTerminal(env)).toContain(`kiln: the cluster is not used: ${problem}; compiling locally\n`);
    expect(clusterLine(env).text).toBe(`not used: ${problem}`);
  });

  it('a scheduler without workers: says so; a working cluster shows no problem', async () => {
    const lone = clusterFiles(path.join(sb.dir, 'lone'));
    const empty = await startServer(['scheduler', '--config', writeSchedulerConfig(lone)]);
    try {
      const env = daemonWith('empty', clientDistConfig(lone, empty.url, 'force_remote_build = true'));
      piped(env);
      const out = onTerminal(env);
      expect(out).toMatch(
        /^kiln: packaging \/usr\/bin\/gcc for the cluster \(once per compiler, a few seconds\)\nkiln: the cluster is not used: the scheduler has no worker for ([\w-]+) \(no worker can run a archive toolchain for \1\): start `kiln-dist worker` with \[scheduler\] url and token pointing at https:\/\/127\.0\.0\.1:\d+; compiling locally\n$/,
      );
      expect(clusterLine(env).text).toMatch(/^not used: the scheduler has no worker for /);
    } finally {
      await empty.stop();
    }
    const env = daemonWith('fine', clientDistConfig(files, scheduler.url, 'force_remote_build = true'));
    piped(env);
    expect(clusterLine(env)).toEqual({ text: 'no problem seen', json: null });
    const stats = JSON.parse(sb.kiln(['--show-stats', '--stats-format', 'json'], { env }).stdout).stats;
    expect(stats.distCompiles).toEqual({ w1: 1 });
  });
});

describe('a full cluster and a broken worker, said once', () => {
  const X86_JOB = { kind: 'archive', digest: 'f'.repeat(64) };

  /** Takes `n` slots by hand (a client's allocation over real HTTPS): they stay taken until released. */
  async function holdSlots(n: number): Promise<string[]> {
    const post = clusterFetch(files);
    const { pools } = await clusterStatus(scheduler.url, files.clientToken);
    const ids: string[] = [];
    for (let i = 0; i < n; i++) {
      const r = await post(`${scheduler.url}/api/v1/jobs`, {
        method: 'POST',
        headers: { authorization: `Bearer ${files.clientToken}`, 'content-type': 'application/json' },
        // As the daemon names itself (its host name): one client, so fair shares leave it alone.
        body: JSON.stringify({
          toolchain: { ...X86_JOB, hostTriples: [pools[0]!.hostTriple] },
          client:
            os
              .hostname()
              .replace(/[^A-Za-z0-9._@:/-]/g, '_')
              .slice(0, 100) || 'client',
        }),
      });
      const answer = JSON.parse(r.text) as { status: string; jobId: string; worker: { id: string } };
      expect([answer.status, answer.worker.id]).toEqual(['assigned', 'w1']);
      ids.push(answer.jobId);
    }
    return ids;
  }

  /** Ends the held jobs as w1 would (its own token). */
  async function release(ids: readonly string[]): Promise<void> {
    const post = clusterFetch(files);
    const token = fs.readFileSync(path.join(files.dir, 'w1.token'), 'utf8').trim();
    for (const id of ids) {
      const r = await post(`${scheduler.url}/api/v1/jobs/${id}/finished`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ workerId: 'w1' }),
      });
      expect(r.status).toBe(204);
    }
  }

  it('no free worker: the terminal is told once that compiles ran locally, a pipe never', async () => {
    const env = daemonWith('full', clientDistConfig(files, scheduler.url, 'force_remote_build = true'));
    piped(env); // packages gcc and runs on w1
    const held = await holdSlots(2);
    const logStart = sb.log().length;
    try {
      piped(env);
      const notice =
        'kiln: the cluster had no free worker (every eligible worker is busy): compiling locally meanwhile; more workers, or a higher max_jobs in their worker.toml, take more jobs at once\n';
      expect(onTerminal(env)).toBe(
        `kiln: packaging /usr/bin/gcc for the cluster (once per compiler, a few seconds)\n${notice}`,
      );
      expect(onTerminal(env)).toBe('');
      piped(env);
      expect(count(sb.log().slice(logStart), 'the cluster had no free worker')).toBe(1);
      const stats = JSON.parse(sb.kiln(['--show-stats', '--stats-format', 'json'], { env }).stdout).stats;
      expect(stats.distLocal).toEqual({ 'no capacity': 4 });
      expect(stats.distCompiles).toEqual({ w1: 1 });
      // The cluster works: no problem in force.
      expect(clusterLine(env).text).toBe('no problem seen');
    } finally {
      await release(held);
    }
  });

  it('an unreachable worker: named once, with what to check; its job goes elsewhere or local', async () => {
    const env = daemonWith('lost', clientDistConfig(files, scheduler.url, 'force_remote_build = true'));
    piped(env); // packages gcc and runs on w1, which now holds it
    const held = await holdSlots(2);
    // A worker the scheduler knows (a real token, heartbeats over HTTPS) where nothing listens.
    const port = await freePort();
    const token = kilnDist([
      'auth',
      'generate-jwt-hs256-worker-token',
      '--worker',
      'w9',
      '--secret-key-file',
      files.secretFile,
    ]);
    const w1 = (await clusterStatus(scheduler.url, files.clientToken)).pools[0]!.workers[0]!;
    const beat = () =>
      clusterFetch(files)(`${scheduler.url}/api/v1/workers/heartbeat`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({
          id: 'w9',
          url: `https://127.0.0.1:${port}`,
          hostTriple: w1.hostTriple,
          os: w1.os,
          cpuModel: w1.cpuModel,
          cpus: 1,
          memoryBytes: 1e9,
          // Room for every job of the test: the scheduler counts each until w9 would report it.
          maxJobs: 8,
          sandbox: 'bwrap',
          resolvers: w1.resolvers,
          toolchains: [],
          toolchainUploads: 0,
          runningJobs: [],
          jobKey: 'k'.repeat(43),
          version: w1.version,
          certSha256: Array.from({ length: 32 }, () => 'AB').join(':'),
        }),
      });
    expect((await beat()).status).toBe(200);
    const beating = setInterval(() => void beat(), 500);
    try {
      const first = onTerminal(env);
      expect(first).toBe(
        'kiln: packaging /usr/bin/gcc for the cluster (once per compiler, a few seconds)\n' +
          `kiln: worker w9 at https://127.0.0.1:${port} is unreachable (connect ECONNREFUSED 127.0.0.1:${port}): its jobs go to other workers or compile locally; check that \`kiln-dist worker\` runs there and its log\n`,
      );
      expect(onTerminal(env)).toBe('');
      piped(env);
      const stats = JSON.parse(sb.kiln(['--show-stats', '--stats-format', 'json'], { env }).stdout).stats;
      // Each went to w9, then to no one else (w1 is full): compiled locally, nothing wrong in the output.
      expect(stats.distRetries).toEqual({ retried: 3, 'compiled locally': 3 });
      expect(stats.distErrors).toEqual({ 'worker unreachable': 3 });
      expect(count(sb.log(), 'worker w9 at')).toBe(1);
    } finally {
      clearInterval(beating);
      // w9 signs off, so that no later test is sent to it.
      const left = await clusterFetch(files)(`${scheduler.url}/api/v1/workers/leave`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ id: 'w9' }),
      });
      expect(left.status).toBe(204);
      await release(held);
    }
  });
  it('a worker whose sandbox fails its jobs: named once, with the failure and what to check', async () => {
    const env = daemonWith('broken', clientDistConfig(files, scheduler.url, 'force_remote_build = true'));
    piped(env); // packages gcc and runs on w1
    const held = await holdSlots(2);
    const crashing = path.join(import.meta.dirname, 'fixtures', 'plugins', 'crashing-sandbox.mjs');
    const w7 = await startServer([
      'worker',
      '--config',
      writeWorkerConfig(files, 'w7', scheduler.url, `sandbox = "${crashing}"`),
    ]);
    try {
      await waitForWorkers(scheduler.url, files.clientToken, 2);
      const first = onTerminal(env);
      expect(first).toBe(
        'kiln: packaging /usr/bin/gcc for the cluster (once per compiler, a few seconds)\n' +
          `kiln: worker w7 at ${w7.url} failed a job (sandbox failure: 500: the crashing sandbox failed to run a job: it always does): its jobs go to other workers or compile locally; check its log and \`kiln --dist-status\`\n`,
      );
      expect(onTerminal(env)).toBe('');
      piped(env);
      const stats = JSON.parse(sb.kiln(['--show-stats', '--stats-format', 'json'], { env }).stdout).stats;
      expect(stats.distErrors).toEqual({ 'sandbox failure': 3 });
      expect(stats.distCompiles).toEqual({ w1: 1 });
    } finally {
      await w7.stop(); // it signs off
      await release(held);
    }
  });
});

describe('one package per real compiler', () => {
  it('cc, gcc, c++ and g++ through one daemon: one package per binary, every object as a local compile makes it', () => {
    const real = (p: string) => fs.realpathSync(`/usr/bin/${p}`);
    expect(real('cc')).toBe(real('gcc'));
    expect(real('c++')).toBe(real('g++'));
    expect(real('gcc')).not.toBe(real('g++'));
    const env = daemonWith('names', clientDistConfig(files, scheduler.url, 'force_remote_build = true'));
    sb.kiln(['--zero-stats'], { env });
    const compiled: [string, string][] = [];
    for (const cc of ['cc', 'gcc', 'c++', 'g++']) {
      const src = source(cc.includes('+') ? 'cc' : 'c');
      const r = sb.kiln([cc, '-O2', '-g', '-c', src, '-o', `${src}.o`], { env });
      expect(r.status, r.stderr).toBe(0);
      expect(r.stderr).toBe('');
      const local = sb.run([cc, '-O2', '-g', '-c', src, '-o', `${src}.local.o`]);
      expect(local.status, local.stderr).toBe(0);
      compiled.push([`${src}.o`, `${src}.local.o`]);
    }
    for (const [remote, local] of compiled) expect(sb.read(remote).equals(sb.read(local))).toBe(true);
    const stats = JSON.parse(sb.kiln(['--show-stats', '--stats-format', 'json'], { env }).stdout).stats;
    expect(stats.distCompiles).toEqual({ w1: 4 });
    expect(stats.distErrors).toEqual({});
    const dir = path.join(sb.dir, 'cache-names', 'toolchains');
    const index = JSON.parse(fs.readFileSync(path.join(dir, 'index.json'), 'utf8')) as {
      entries: Record<string, { spec: { digest: string } }>;
    };
    // One index entry per real binary (gcc-12, g++-12), not per name.
    expect(Object.keys(index.entries)).toHaveLength(2);
    const archives = fs.readdirSync(dir).filter((f) => f.endsWith('.tar.gz'));
    expect(archives.sort()).toEqual(
      [...new Set(Object.values(index.entries).map((e) => `${e.spec.digest}.tar.gz`))].sort(),
    );
    expect(archives).toHaveLength(ARCHIVES);
  });

  it('clang and clang++, one binary that reads its argv[0]: one package, each run by its own name', () => {
    if (!have('clang')) return;
    expect(fs.realpathSync('/usr/bin/clang')).toBe(fs.realpathSync('/usr/bin/clang++'));
    const env = daemonWith('clang', clientDistConfig(files, scheduler.url, 'force_remote_build = true'));
    sb.kiln(['--zero-stats'], { env });
    // The job names its language (-x c++), so both names compile right whichever one runs: what
    // this checks is that the shared package runs each name it was called by, byte-identically.
    const src = `clang-${++sources}.cc`;
    sb.file(
      src,
      'template <typename T> T twice(T x) { return x + x; }\nint use(int x) { return twice(x); }\n',
    );
    const c = source();
    for (const [cc, file] of [
      ['clang++', src],
      ['clang', c],
    ] as const) {
      const r = sb.kiln([cc, '-O2', '-c', file, '-o', `${file}.o`], { env });
      expect(r.status, r.stderr).toBe(0);
      expect(r.stderr).toBe('');
      expect(sb.run([cc, '-O2', '-c', file, '-o', `${file}.local.o`]).status).toBe(0);
      expect(sb.read(`${file}.o`).equals(sb.read(`${file}.local.o`)), cc).toBe(true);
    }
    const stats = JSON.parse(sb.kiln(['--show-stats', '--stats-format', 'json'], { env }).stdout).stats;
    expect(stats.distCompiles).toEqual({ w1: 2 });
    const dir = path.join(sb.dir, 'cache-clang', 'toolchains');
    const index = JSON.parse(fs.readFileSync(path.join(dir, 'index.json'), 'utf8'));
    expect(Object.keys(index.entries)).toHaveLength(1);
    expect(fs.readdirSync(dir).filter((f) => f.endsWith('.tar.gz'))).toHaveLength(1);
  });
});

/** gcc's package holds g++ beside it and g++'s holds gcc: the two come out as one archive. */
const ARCHIVES = 1;
