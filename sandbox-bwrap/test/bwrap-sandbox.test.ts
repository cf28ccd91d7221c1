/** What the conformance kit cannot see from outside: uids, limits, clean-up, bwrap's own failures. */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { DEFAULT_JOB_LIMITS, type SandboxJob } from '@kiln/plugins';
import { buildProbe } from '@kiln/plugins/conformance';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { have } from '../../test/helpers/prereq.js';
import { BwrapSandbox, type BwrapSandboxOptions } from '../src/bwrap-sandbox.js';

const cwd = '/src/proj';
let tmp: string;
let emptyRoot: string;
let probe: Buffer;

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
    const running = sandbox.run(probeJob(['sleep', 'kiln-uid-check'], { timeoutMs: 1500 }));
    let uid: string | undefined;
    for (let i = 0; i < 50 && !uid; i++) {
      await new Promise((r) => setTimeout(r, 50));
      uid = await statusUid('kiln-uid-check');
    }
    expect(uid).toBe('2000000000');
    expect((await running).timedOut).toBe(true);
  });

  it.skipIf(process.getuid?.() !== 0)(
    'falls back to a namespace-only uid for a toolchain root only root can reach',
    async () => {
      const hidden = path.join(tmp, 'hidden');
      await fs.mkdir(path.join(hidden, 'root'), { recursive: true, mode: 0o700 });
      const sandbox = new BwrapSandbox(options());
      const r = await sandbox.run(probeJob(['exit', '0'], { toolchainRoot: path.join(hidden, 'root') }));
      expect(r.exitCode).toBe(0);
    },
  );

  it("rejects with KILN_ERR_SANDBOX_FAILED when bwrap cannot start the job's command", async () => {
    const sandbox = new BwrapSandbox(options());
    await expect(
      sandbox.run(probeJob([], { argv: ['/usr/bin/not-in-the-toolchain'] })),
    ).rejects.toMatchObject({
      code: 'KILN_ERR_SANDBOX_FAILED',
      message: expect.stringContaining('bwrap: execvp /usr/bin/not-in-the-toolchain'),
    });
  });

  it('rejects when the toolchain root does not exist', async () => {
    const sandbox = new BwrapSandbox(options());
    await expect(
      sandbox.run(probeJob(['exit', '0'], { toolchainRoot: '/nonexistent/root' })),
    ).rejects.toMatchObject({
      code: 'KILN_ERR_SANDBOX_FAILED',
    });
  });

  it('keeps only max_log_bytes of stdout', async () => {
    const big = Buffer.alloc(300 * 1024, 'a');
    const sandbox = new BwrapSandbox(options());
    const r = await sandbox.run(
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
    const r = await sandbox.run(job);
    expect(r).toMatchObject({ exitCode: 0, limitExceeded: 'output' });
    expect(r.outputs.size).toBe(0);
    expect(r.stderr.toString()).toContain('kiln: the job exceeded its limit of 4 bytes of outputs');
  });

  it('does not follow a directory symlink on the way to an output', async () => {
    const outside = path.join(tmp, 'outside');
    await fs.mkdir(outside, { recursive: true });
    await fs.writeFile(path.join(outside, 'x.o'), 'host secret');
    const sandbox = new BwrapSandbox(options());
    const r = await sandbox.run(probeJob(['symlink', outside, 'sub'], { outputs: [`${cwd}/sub/x.o`] }));
    expect(r.stdout.toString()).toContain('ALLOWED symlink');
    expect(r.outputs.size).toBe(0);
  });

  it('removes every job directory: after success, failure, timeout and rejection', async () => {
    const sandbox = new BwrapSandbox(options());
    await sandbox.run(probeJob(['write', 'out.txt', 'x'], { outputs: [`${cwd}/out.txt`] }));
    await sandbox.run(probeJob(['exit', '3']));
    await sandbox.run(probeJob(['sleep', 'kiln-cleanup'], { timeoutMs: 500 }));
    await sandbox.run(probeJob([], { argv: ['/missing'] })).catch(() => {});
    expect(await fs.readdir(path.join(tmp, 'work'))).toEqual([]);
  });
});
