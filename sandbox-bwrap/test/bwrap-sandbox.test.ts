/** What the conformance kit cannot see from outside: uids, limits, clean-up, bwrap's own failures. */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { bufferedResult, DEFAULT_JOB_LIMITS, type Sandbox, type SandboxJob } from '@kiln/plugins';
import { buildProbe } from '@kiln/plugins/conformance';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { have } from '../../test/helpers/prereq.js';
import { BwrapSandbox, type BwrapSandboxOptions } from '../src/bwrap-sandbox.js';

const cwd = '/src/proj';
let tmp: string;
let emptyRoot: string;
let probe: Buffer;

/** Runs a job and reads its outputs whole, releasing the result. */
const runBuffered = (sandbox: Sandbox, job: SandboxJob) => sandbox.run(job).then(bufferedResult);

const options = (over: Partial<BwrapSandboxOptions> = {}): BwrapSandboxOptions => ({
  bwrap_path: 'bwrap',
  work_dir: path.join(tmp, 'work'),
  max_output_bytes: 1024 * 1024,
  max_log_bytes: 64 * 1024,
  job_uid: 65534,
  job_gid: 65534,
  slot_uid_base: 2_000_000_000,
  extra_args: [],
  ...over,
});

// The probe is static, so an empty toolchain root is enough.
const probeJob = (args: string[], over: Partial<SandboxJob> = {}): SandboxJob => ({
  id: 'unit',
  toolchainRoot: emptyRoot,
  cwd,
  argv: [`${cwd}/probe`, ...args],
  env: {},
  inputs: [{ path: `${cwd}/probe`, data: probe, executable: true }],
  outputs: [],
  timeoutMs: 20_000,
  limits: DEFAULT_JOB_LIMITS,
  ...over,
});

async function statusUid(token: string): Promise<string | undefined> {
  for (const pid of await fs.readdir('/proc')) {
    const cmdline = await fs.readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (!cmdline.includes(token)) continue;
    const status = await fs.readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
    return /^Uid:\s+(\d+)/m.exec(status)?.[1];
  }
  return undefined;
}

describe.skipIf(!have('bwrap'))('BwrapSandbox', () => {
  beforeAll(async () => {
    tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'kiln-bwrap-unit-'));
    await fs.chmod(tmp, 0o755);
    emptyRoot = path.join(tmp, 'root');
    await fs.mkdir(emptyRoot);
    probe = await buildProbe(tmp);
  });
  afterAll(() => fs.rm(tmp, { recursive: true, force: true }));

  it.skipIf(process.getuid?.() !== 0)('a root worker starts jobs as their slot uid on the host', async () => {
    const sandbox = new BwrapSandbox(options());
    const running = runBuffered(sandbox, probeJob(['sleep', 'kiln-uid-check'], { timeoutMs: 1500 }));
    let uid: string | undefined;
    for (let i = 0; i < 50 && !uid; i++) {
      await new Promise((r) => setTimeout(r, 50));
      uid = await statusUid('kiln-uid-check');
    }
    expect(uid).toBe('2000000000');
    expect((await running).timedOut).toBe(true);
  });

  it.skipIf(process.getuid?.() !== 0)('probe() says how a root worker enforces the limits', async () => {
    const p = await new BwrapSandbox(options()).probe();
    expect(p.ok, p.detail).toBe(true);
    expect(p.detail).toContain('on the host as uid 2000000000 + their slot, each with its own process limit');
    expect(p.detail).toContain('memory limited per process (RLIMIT_AS)');
    expect(p.detail).toContain("each job's cwd, /tmp and /dev/shm share a tmpfs of the job's disk limit");
  });

  it.skipIf(process.getuid?.() !== 0)('gives jobs running at once host uids of their own', async () => {
    const sandbox = new BwrapSandbox(options());
    const marks = ['kiln-slot-a', 'kiln-slot-b'];
    const running = marks.map((m) => runBuffered(sandbox, probeJob(['sleep', m], { timeoutMs: 1500 })));
    const uids: (string | undefined)[] = [undefined, undefined];
    for (let i = 0; i < 50 && !(uids[0] && uids[1]); i++) {
      await new Promise((r) => setTimeout(r, 50));
      for (const [j, m] of marks.entries()) uids[j] ??= await statusUid(m);
    }
    await Promise.all(running);
    expect(uids.sort()).toEqual(['2000000000', '2000000001']);
    // Slots are reused: the next job gets slot 0 again.
    const next = runBuffered(sandbox, probeJob(['sleep', 'kiln-slot-c'], { timeoutMs: 1000 }));
    let uid: string | undefined;
    for (let i = 0; i < 50 && !uid; i++) {
      await new Promise((r) => setTimeout(r, 50));
      uid = await statusUid('kiln-slot-c');
    }
    await next;
    expect(uid).toBe('2000000000');
  });

  it.skipIf(process.getuid?.() !== 0)(
    'falls back to a namespace-only uid for a toolchain root only root can reach',
    async () => {
      const hidden = path.join(tmp, 'hidden');
      await fs.mkdir(path.join(hidden, 'root'), { recursive: true, mode: 0o700 });
      const sandbox = new BwrapSandbox(options());
      const r = await runBuffered(
        sandbox,
        probeJob(['exit', '0'], { toolchainRoot: path.join(hidden, 'root') }),
      );
      expect(r.exitCode).toBe(0);
    },
  );

  it("rejects with KILN_ERR_SANDBOX_FAILED when bwrap cannot start the job's command", async () => {
    const sandbox = new BwrapSandbox(options());
    await expect(
      runBuffered(sandbox, probeJob([], { argv: ['/usr/bin/not-in-the-toolchain'] })),
    ).rejects.toMatchObject({
      code: 'KILN_ERR_SANDBOX_FAILED',
      message: expect.stringContaining('bwrap: execvp /usr/bin/not-in-the-toolchain'),
    });
  });

  it('rejects when the toolchain root does not exist', async () => {
    const sandbox = new BwrapSandbox(options());
    await expect(
      runBuffered(sandbox, probeJob(['exit', '0'], { toolchainRoot: '/nonexistent/root' })),
    ).rejects.toMatchObject({
      code: 'KILN_ERR_SANDBOX_FAILED',
    });
  });

  it('keeps only max_log_bytes of stdout', async () => {
    const big = Buffer.alloc(300 * 1024, 'a');
    const sandbox = new BwrapSandbox(options());
    const r = await runBuffered(
      sandbox,
      probeJob(['read', `${cwd}/big`], {
        inputs: [...probeJob([]).inputs, { path: `${cwd}/big`, data: big }],
      }),
    );
    expect(r.exitCode).toBe(0);
    expect(r.stdout.length).toBe(64 * 1024);
  });

  it('returns no outputs past max_output_bytes, and says so', async () => {
    const sandbox = new BwrapSandbox(options({ max_output_bytes: 4 }));
    const job = probeJob(['write', 'out.txt', 'more than four bytes'], { outputs: [`${cwd}/out.txt`] });
    const r = await runBuffered(sandbox, job);
    expect(r).toMatchObject({ exitCode: 0, limitExceeded: 'output' });
    expect(r.outputs.size).toBe(0);
    expect(r.stderr.toString()).toContain('kiln: the job exceeded its limit of 4 bytes of outputs');
  });

  it('does not follow a directory symlink on the way to an output', async () => {
    const outside = path.join(tmp, 'outside');
    await fs.mkdir(outside, { recursive: true });
    await fs.writeFile(path.join(outside, 'x.o'), 'host secret');
    const sandbox = new BwrapSandbox(options());
    const r = await runBuffered(
      sandbox,
      probeJob(['symlink', outside, 'sub'], { outputs: [`${cwd}/sub/x.o`] }),
    );
    expect(r.stdout.toString()).toContain('ALLOWED symlink');
    expect(r.outputs.size).toBe(0);
  });

  it.skipIf(!have('rustc'))(
    'compiles with a real rustc under the default limits',
    { timeout: 120_000 },
    async () => {
      // A toolchain root of rustc's sysroot (hard links where possible) over the host's /usr.
      const sysroot = execFileSync('rustc', ['--print', 'sysroot'], { encoding: 'utf8' }).trim();
      const host = /^host: (\S+)$/m.exec(execFileSync('rustc', ['-vV'], { encoding: 'utf8' }))![1]!;
      const root = path.join(tmp, 'rust-root');
      const copy = async (rel: string) => {
        await fs.mkdir(path.dirname(path.join(root, 'rust', rel)), { recursive: true });
        try {
          execFileSync('cp', ['-al', path.join(sysroot, rel), path.join(root, 'rust', rel)]);
        } catch {
          execFileSync('cp', ['-a', path.join(sysroot, rel), path.join(root, 'rust', rel)]);
        }
      };
      await copy('bin/rustc');
      for (const f of await fs.readdir(path.join(sysroot, 'lib')))
        if (f.includes('.so')) await copy(`lib/${f}`);
      await copy(`lib/rustlib/${host}/lib`);
      for (const dir of [root, path.join(root, 'rust')]) await fs.chmod(dir, 0o755);
      for (const top of ['lib', 'lib64', 'bin']) await fs.symlink(`usr/${top}`, path.join(root, top));
      const source = `${Array.from({ length: 40 }, (_, i) => `pub fn f${i}(v: &[u64]) -> u64 { v.iter().map(|x| x * ${i}).sum() }`).join('\n')}\n`;
      const sandbox = new BwrapSandbox(options({ extra_args: ['--ro-bind', '/usr', '/usr'] }));
      const rustc = (limits: typeof DEFAULT_JOB_LIMITS) =>
        runBuffered(sandbox, {
          id: 'rustc',
          toolchainRoot: root,
          cwd,
          argv: [
            '/rust/bin/rustc',
            '--edition',
            '2021',
            '--crate-type',
            'rlib',
            '--crate-name',
            'm',
            '-C',
            'opt-level=2',
            '-C',
            'codegen-units=16',
            'm.rs',
            '-o',
            'libm.rlib',
          ],
          env: { PATH: '/usr/bin' },
          inputs: [{ path: `${cwd}/m.rs`, data: Buffer.from(source) }],
          outputs: [`${cwd}/libm.rlib`],
          timeoutMs: 100_000,
          limits,
        });
      const r = await rustc(DEFAULT_JOB_LIMITS);
      expect(r.exitCode, r.stderr.toString()).toBe(0);
      expect(r.limitExceeded).toBeUndefined();
      expect(r.outputs.get(`${cwd}/libm.rlib`)?.subarray(0, 8).toString()).toBe('!<arch>\n');
      // The same compile under a small memory limit fails: the limits reach rustc.
      const small = await rustc({ ...DEFAULT_JOB_LIMITS, memoryBytes: 64 * 1024 * 1024 });
      expect(small.exitCode).not.toBe(0);
      expect(small.outputs.size).toBe(0);
    },
  );

  it('removes every job directory: after success, failure, timeout and rejection', async () => {
    const sandbox = new BwrapSandbox(options());
    await runBuffered(sandbox, probeJob(['write', 'out.txt', 'x'], { outputs: [`${cwd}/out.txt`] }));
    await runBuffered(sandbox, probeJob(['exit', '3']));
    await runBuffered(sandbox, probeJob(['sleep', 'kiln-cleanup'], { timeoutMs: 500 }));
    await runBuffered(sandbox, probeJob([], { argv: ['/missing'] })).catch(() => {});
    expect(await fs.readdir(path.join(tmp, 'work'))).toEqual([]);
  });
});
