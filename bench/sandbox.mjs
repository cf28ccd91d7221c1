// Per-job cost of the sandboxes on the same small compile: N sequential jobs of `gcc -c small.i`
// through each sandbox's run() (inputs written, compiler run, object streamed back, released),
// after a few warm-up jobs; medians. `plain` is the same gcc spawned directly on the host, the floor.
// Docker needs a running engine (DOCKER_HOST or /var/run/docker.sock); its warm containers are
// what is measured, the first job's image import and container start are reported apart.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { median } from './util.mjs';

const SOURCE = '# 1 "small.c"\nint kiln_bench(int x) { return x * 42 + 7; }\n';

export async function benchSandboxes({ runs, work, root }) {
  const { bufferedResult, DEFAULT_JOB_LIMITS } = await import(path.join(root, 'plugins/dist/index.js'));
  const { packageToolchain } = await import(path.join(root, 'core/dist/toolchain/package.js'));
  const { safeExtract } = await import(path.join(root, 'core/dist/toolchain/safe-extract.js'));
  const { BwrapSandbox } = await import(path.join(root, 'sandbox-bwrap/dist/index.js'));
  const { DockerSandbox } = await import(path.join(root, 'sandbox-docker/dist/index.js'));
  const dir = path.join(work, 'sandbox-bench');
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
  fs.chmodSync(work, 0o755);
  const archive = path.join(dir, 'gcc.tar.gz');
  const spec = await packageToolchain('gcc', archive);
  const tcRoot = path.join(dir, 'roots', spec.digest);
  await safeExtract(archive, tcRoot);
  const cwd = '/home/kiln-bench/proj';
  let n = 0;
  const job = () => ({
    id: `bench-${++n}`,
    toolchainRoot: tcRoot,
    cwd,
    argv: [spec.compiler, '-O2', '-c', 'small.i', '-o', 'small.o'],
    env: { PATH: '/usr/bin:/bin' },
    inputs: [{ path: `${cwd}/small.i`, data: Buffer.from(SOURCE) }],
    outputs: [`${cwd}/small.o`],
    timeoutMs: 60_000,
    limits: DEFAULT_JOB_LIMITS,
  });
  const jobs = Math.max(20, runs * 6);
  const timeJobs = async (sandbox) => {
    const first = process.hrtime.bigint();
    const r0 = await bufferedResult(await sandbox.run(job()));
    const firstMs = Number(process.hrtime.bigint() - first) / 1e6;
    if (r0.exitCode !== 0) throw new Error(`${sandbox.name}: ${r0.stderr}`);
    for (let i = 0; i < 3; i++) await bufferedResult(await sandbox.run(job()));
    const times = [];
    for (let i = 0; i < jobs; i++) {
      const t = process.hrtime.bigint();
      const r = await bufferedResult(await sandbox.run(job()));
      times.push(Number(process.hrtime.bigint() - t) / 1e6);
      if (!r.outputs.has(`${cwd}/small.o`)) throw new Error(`${sandbox.name}: no object`);
    }
    return { perJobMs: median(times), firstMs };
  };
  const result = {};
  // The floor: the same compile, gcc spawned on the host.
  fs.writeFileSync(path.join(dir, 'small.i'), SOURCE);
  const plain = [];
  for (let i = 0; i < jobs; i++) {
    const t = process.hrtime.bigint();
    spawnSync('gcc', ['-O2', '-c', 'small.i', '-o', 'small.o'], { cwd: dir });
    plain.push(Number(process.hrtime.bigint() - t) / 1e6);
  }
  result.plain = { perJobMs: median(plain) };
  result.bwrap = await timeJobs(
    new BwrapSandbox({
      bwrap_path: 'bwrap',
      work_dir: path.join(dir, 'bwrap-work'),
      max_output_bytes: 1 << 30,
      max_log_bytes: 1 << 24,
      job_uid: 65534,
      job_gid: 65534,
      slot_uid_base: 2_050_000_000,
      extra_args: [],
    }),
  );
  const docker = new DockerSandbox({
    work_dir: path.join(dir, 'docker-work'),
    workerId: `bench-${process.pid}`,
    hostTriple: 'bench',
    maxJobs: 2,
    image_cache_size: 20 * 1024 ** 3,
    idle_timeout: 600,
    max_output_bytes: 1 << 30,
    max_log_bytes: 1 << 24,
    api_timeout: 60,
  });
  const probe = await docker.probe();
  if (probe.ok) {
    try {
      result.docker = await timeJobs(docker);
    } finally {
      await docker.close();
    }
  } else process.stderr.write(`  docker row skipped: ${probe.detail}\n`);
  return { jobs, ...result };
}
