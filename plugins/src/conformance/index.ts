/**
 * The conformance kits (the resolver kit is in resolver-conformance.ts). The sandbox conformance kit: every sandbox plugin, built-in or third-party, runs it from a vitest
 * file. It runs real jobs through the sandbox and checks them from the host: a real compile, then a
 * static probe program that tries the network, host files, the time limit, writes outside its
 * outputs, and the job limits (a fork bomb, a memory hog, a disk filler, outputs too big; each with a
 * ceiling of its own, so a sandbox without limits fails the test without hurting the host). Needs
 * `cc -static` on the host and a toolchain root with a C compiler.
 *
 * @example
 * ```ts
 * import { sandboxConformance } from '@kiln/plugins/conformance';
 * sandboxConformance({ name: 'mine', createSandbox: () => new MySandbox(), toolchain: { root, compiler: '/usr/bin/gcc' } });
 * ```
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_JOB_LIMITS, type JobLimits } from '../job-limits.js';
import { type BufferedResult, bufferedResult } from '../outputs.js';
import type { JobInput, Sandbox, SandboxJob } from '../sandbox.js';
import { buildProbe, eventually, exists, hostEntries, listenCounting, processesWith } from './host-probe.js';

/** Runs a job and reads its outputs back whole, releasing the result (every case does). */
const runBuffered = (sandbox: Sandbox, job: SandboxJob) => sandbox.run(job).then(bufferedResult);

export { buildProbe } from './host-probe.js';
export { PROBE_SOURCE } from './probe-source.js';
export {
  type ConformanceTarEntry,
  type ResolverConformanceOptions,
  resolverConformance,
} from './resolver-conformance.js';
export { writeTarGz } from './tar-writer.js';

export interface SandboxConformanceOptions {
  /** Shown in the test names. */
  readonly name: string;
  /** Called once, before the first test. */
  readonly createSandbox: () => Sandbox | Promise<Sandbox>;
  /**
   * A materialised toolchain root and its C compiler's absolute path inside that root. Read when
   * the tests run, so a `beforeAll` of the caller may fill the object in.
   */
  readonly toolchain: { readonly root: string; readonly compiler: string };
}

const TEST_TIMEOUT = 60_000;
// Preprocessed, as a distributed compile sends it: toolchains packed for workers carry no headers,
// and a .c file would make cc1 look for stdc-predef.h.
const HELLO_I = '# 1 "hello.c"\nint kiln_conformance(int x) { return x * 42; }\n';

const MiB = 1024 * 1024;
/** Small limits for the hostile jobs, so that a sandbox enforcing them is quick to prove it. */
const SMALL_LIMITS: JobLimits = {
  processes: 32,
  memoryBytes: 256 * MiB,
  tmpDiskBytes: 32 * MiB,
  outputBytes: 64 * 1024,
};

function token(): string {
  return `kiln${randomBytes(6).toString('hex')}`;
}

function text(r: BufferedResult): string {
  return `${r.stdout.toString('utf8')}\n${r.stderr.toString('utf8')}`;
}

/** Declares the conformance suite for one sandbox. */
export function sandboxConformance(options: SandboxConformanceOptions): void {
  describe(`sandbox conformance: ${options.name}`, () => {
    // A path that exists nowhere on the host, so a job writing through to the host would show.
    const cwd = `/home/kiln-conformance-${token()}/proj`;
    let sandbox: Sandbox;
    let tmp: string;
    let probe: JobInput;
    let jobs = 0;

    const job = (over: Partial<SandboxJob> & Pick<SandboxJob, 'argv'>): SandboxJob => ({
      id: `conformance-${++jobs}`,
      toolchainRoot: options.toolchain.root,
      cwd,
      env: { PATH: '/usr/bin:/bin' },
      inputs: [probe],
      outputs: [],
      timeoutMs: 30_000,
      limits: DEFAULT_JOB_LIMITS,
      ...over,
    });
    const probeJob = (args: string[], over: Partial<SandboxJob> = {}) =>
      job({ argv: [`${cwd}/probe`, ...args], ...over });

    beforeAll(async () => {
      tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'kiln-conformance-'));
      probe = { path: `${cwd}/probe`, data: await buildProbe(tmp), executable: true };
      sandbox = await options.createSandbox();
    }, TEST_TIMEOUT);

    afterAll(async () => {
      if (tmp) await fs.rm(tmp, { recursive: true, force: true });
      // Nothing of any job may have reached the host at the job's own path.
      expect(await exists(path.dirname(cwd))).toBe(false);
    });

    it('probe() says the host can run jobs', async () => {
      const p = await sandbox.probe();
      expect(p.detail).toBeTypeOf('string');
      expect(p, p.detail).toMatchObject({ ok: true });
    });

    it('compiles a C file into an ELF object', { timeout: TEST_TIMEOUT }, async () => {
      const out = `${cwd}/hello.o`;
      const r = await runBuffered(
        sandbox,
        job({
          argv: [options.toolchain.compiler, '-c', 'hello.i', '-o', 'hello.o'],
          inputs: [{ path: `${cwd}/hello.i`, data: Buffer.from(HELLO_I) }],
          outputs: [out],
        }),
      );
      expect(r.exitCode, text(r)).toBe(0);
      expect(r.timedOut).toBe(false);
      expect([...r.outputs.keys()]).toEqual([out]);
      const obj = r.outputs.get(out)!;
      expect(obj.subarray(0, 4)).toEqual(Buffer.from('\x7fELF', 'latin1'));
      expect(obj.readUInt16LE(16), 'e_type is ET_REL').toBe(1);
    });

    it('reproduces the client cwd, so -g records it', { timeout: TEST_TIMEOUT }, async () => {
      const out = `${cwd}/obj/hello.o`;
      const r = await runBuffered(
        sandbox,
        job({
          argv: [options.toolchain.compiler, '-g', '-c', 'src/hello.i', '-o', 'obj/hello.o'],
          inputs: [
            { path: `${cwd}/src/hello.i`, data: Buffer.from(HELLO_I) },
            { path: `${cwd}/obj/.keep`, data: new Uint8Array() },
          ],
          outputs: [out],
        }),
      );
      expect(r.exitCode, text(r)).toBe(0);
      expect(r.outputs.get(out)?.includes(cwd)).toBe(true);
    });

    it("resolves a job's own failure with its exit code and stderr", { timeout: TEST_TIMEOUT }, async () => {
      const r = await runBuffered(sandbox, probeJob(['exit', '7']));
      expect(r).toMatchObject({ exitCode: 7, timedOut: false });
      expect(r.stderr.toString()).toContain('exiting with 7');
    });

    it('reports a job killed by a signal', { timeout: TEST_TIMEOUT }, async () => {
      const r = await runBuffered(sandbox, probeJob(['abort']));
      expect(r).toMatchObject({ exitCode: null, signal: 'SIGABRT', timedOut: false });
    });

    it('gives the job no network', { timeout: TEST_TIMEOUT }, async () => {
      const server = await listenCounting();
      try {
        const started = Date.now();
        const r = await runBuffered(sandbox, probeJob(['net', String(server.port)], { timeoutMs: 20_000 }));
        expect(r.stdout.toString(), text(r)).not.toContain('ALLOWED');
        expect(r.stdout.toString().match(/DENIED/g)).toHaveLength(3);
        expect(r.exitCode).toBe(0);
        expect(Date.now() - started, 'network attempts must fail fast').toBeLessThan(10_000);
        expect(server.count()).toBe(0);
      } finally {
        await server.close();
      }
    });

    it("hides the host's files", { timeout: TEST_TIMEOUT }, async () => {
      const secret = token();
      const secretFile = path.join(tmp, 'secret.txt');
      await fs.writeFile(secretFile, secret);
      await fs.chmod(tmp, 0o755);
      const paths = [secretFile, tmp, '/etc/passwd', '/root', '/home'];
      const r = await runBuffered(sandbox, probeJob(['read', ...paths]));
      const out = text(r);
      // Silence proves nothing: the probe must have run and reported on every path.
      expect(r.exitCode, out).toBe(0);
      for (const p of paths)
        expect(
          out.includes(`ALLOWED read ${p}\n`) || out.includes(`DENIED read ${p} `),
          `${p} reported`,
        ).toBe(true);
      expect(out).toContain(`DENIED read ${secretFile} `);
      expect(out).toContain(`DENIED read ${tmp} `);
      expect(out).not.toContain(secret);
      expect(out).not.toContain(`ALLOWED read ${secretFile}`);
      expect(out).not.toContain(`ALLOWED read ${tmp}`);
      const passwd = await fs.readFile('/etc/passwd', 'utf8').catch(() => undefined);
      if (passwd) expect(out).not.toContain(passwd.split('\n')[0]);
      const own = path.basename(path.dirname(cwd));
      for (const dir of ['/root', '/home']) {
        for (const name of await hostEntries(dir)) {
          if (name !== own) expect(out).not.toContain(`ENTRY ${dir} ${name}\n`);
        }
      }
    });

    it('kills the whole job at its time limit', { timeout: TEST_TIMEOUT }, async () => {
      const mark = token();
      const started = Date.now();
      const r = await runBuffered(sandbox, probeJob(['sleep', mark], { timeoutMs: 1500 }));
      const took = Date.now() - started;
      expect(r.timedOut).toBe(true);
      expect(r.exitCode).not.toBe(0);
      expect(took).toBeGreaterThanOrEqual(1400);
      expect(took, 'the result comes soon after the limit').toBeLessThan(6500);
      expect(await eventually(async () => (await processesWith(mark)).length === 0, 2000)).toBe(true);
    });

    it('keeps writes outside the declared outputs off the host', { timeout: TEST_TIMEOUT }, async () => {
      const mark = token();
      const hostDir = await fs.mkdtemp(path.join(tmp, 'target-'));
      await fs.chmod(hostDir, 0o777);
      const declared = ['out.txt', 'missing.txt', 'link.out', 'fifo.out'].map((f) => `${cwd}/${f}`);
      const r = await runBuffered(
        sandbox,
        probeJob(
          [
            'write',
            'out.txt',
            mark,
            'undeclared.txt',
            mark,
            `/tmp/${mark}`,
            mark,
            `${hostDir}/escaped.txt`,
            mark,
          ],
          { outputs: declared },
        ),
      );
      expect(r.exitCode, text(r)).toBe(0);
      expect([...r.outputs.keys()]).toEqual([`${cwd}/out.txt`]);
      expect(r.outputs.get(`${cwd}/out.txt`)?.toString()).toBe(mark);
      expect(await exists(`/tmp/${mark}`)).toBe(false);
      expect(await hostEntries(hostDir)).toEqual([]);
      expect(await exists(cwd)).toBe(false);
    });

    it('refuses inputs and outputs outside cwd', async () => {
      const data = Buffer.from('x');
      const bad: Partial<SandboxJob>[] = [
        { inputs: [{ path: '/etc/kiln-evil', data }] },
        { inputs: [{ path: `${cwd}/../kiln-evil`, data }] },
        { inputs: [{ path: `${cwd}/a/../../kiln-evil`, data }] },
        { inputs: [{ path: 'relative.c', data }] },
        { inputs: [{ path: cwd, data }] },
        { outputs: ['/tmp/kiln-evil.o'] },
        { outputs: [`${cwd}/../kiln-evil.o`] },
        { cwd: 'relative/dir' },
        { cwd: `${cwd}/../other` },
      ];
      for (const over of bad) {
        const attempt = runBuffered(sandbox, probeJob(['exit', '0'], over));
        await expect(attempt, JSON.stringify(over)).rejects.toMatchObject({
          code: 'KILN_ERR_SANDBOX_JOB_INVALID',
        });
      }
      expect(await exists('/etc/kiln-evil')).toBe(false);
    });

    it('keeps concurrent jobs apart', { timeout: TEST_TIMEOUT }, async () => {
      const marks = [token(), token(), token(), token()];
      const results = await Promise.all(
        marks.map((m) => runBuffered(sandbox, probeJob(['isolate', m], { outputs: [`${cwd}/mine.txt`] }))),
      );
      results.forEach((r, i) => {
        expect(r.exitCode, text(r)).toBe(0);
        expect(r.outputs.get(`${cwd}/mine.txt`)?.toString()).toBe(marks[i]);
        for (const [j, other] of marks.entries()) {
          expect(r.stdout.toString().includes(`mine-${other}`), `job ${i} sees job ${j}'s files`).toBe(
            i === j,
          );
        }
      });
    });

    it('contains a fork bomb within its process limit', { timeout: TEST_TIMEOUT }, async () => {
      const mark = token();
      const limit = SMALL_LIMITS.processes;
      let peak = 0;
      let sampling = true;
      // Counted from the host: bwrap-like launchers carrying the job's argv may add a couple.
      const sampler = (async () => {
        while (sampling) {
          peak = Math.max(peak, (await processesWith(mark)).length);
          await new Promise((r) => setTimeout(r, 50));
        }
      })();
      const started = Date.now();
      let r: BufferedResult;
      try {
        // Its own ceiling (4x the limit) keeps a sandbox without a limit from hurting the host.
        r = await runBuffered(
          sandbox,
          probeJob(['forkbomb', String(limit * 4), '2000', mark], {
            timeoutMs: 15_000,
            limits: SMALL_LIMITS,
          }),
        );
      } finally {
        sampling = false;
        await sampler;
        const gone = await eventually(async () => (await processesWith(mark)).length === 0, 3000);
        for (const pid of await processesWith(mark)) {
          try {
            process.kill(pid, 'SIGKILL');
          } catch {}
        }
        expect(gone, 'no process of the job is left').toBe(true);
      }
      const m = /FORKED (\d+) FAILED (\d+)/.exec(r.stdout.toString());
      expect(m, text(r)).not.toBeNull();
      expect(Number(m![1]) + 1, 'processes of the job at once').toBeLessThanOrEqual(limit);
      expect(Number(m![2]), 'forks refused').toBeGreaterThan(0);
      expect(peak, 'processes seen on the host').toBeLessThanOrEqual(limit + 3);
      expect(r.timedOut).toBe(false);
      expect(Date.now() - started).toBeLessThan(15_000);
    });

    it('runs a compile next to a fork bomb', { timeout: TEST_TIMEOUT }, async () => {
      const mark = token();
      const bomb = runBuffered(
        sandbox,
        probeJob(['forkbomb', String(SMALL_LIMITS.processes * 4), '3000', mark], {
          timeoutMs: 15_000,
          limits: SMALL_LIMITS,
        }),
      );
      try {
        await eventually(async () => (await processesWith(mark)).length >= 8, 5000);
        const out = `${cwd}/hello.o`;
        const r = await runBuffered(
          sandbox,
          job({
            argv: [options.toolchain.compiler, '-c', 'hello.i', '-o', 'hello.o'],
            inputs: [{ path: `${cwd}/hello.i`, data: Buffer.from(HELLO_I) }],
            outputs: [out],
          }),
        );
        expect(r.exitCode, text(r)).toBe(0);
        expect(r.outputs.has(out)).toBe(true);
      } finally {
        await bomb;
      }
    });

    it('stops a memory hog at its memory limit', { timeout: TEST_TIMEOUT }, async () => {
      const limitMiB = SMALL_LIMITS.memoryBytes / MiB;
      const rssBefore = process.memoryUsage().rss;
      const r = await runBuffered(
        sandbox,
        probeJob(['memhog', String(limitMiB * 4)], { limits: SMALL_LIMITS }),
      );
      const out = r.stdout.toString();
      expect(out, text(r)).not.toContain('ALLOCATED');
      expect(r.exitCode === 0 && r.signal === null, 'the job failed').toBe(false);
      const denied = /DENIED alloc after (\d+) MiB/.exec(out);
      if (denied) expect(Number(denied[1])).toBeLessThanOrEqual(limitMiB);
      expect(r.timedOut).toBe(false);
      expect(r.outputs.size).toBe(0);
      expect(process.memoryUsage().rss - rssBefore, "the worker's own memory").toBeLessThan(128 * MiB);
    });

    it('stops a disk filler at its disk limit: cwd, /tmp and /dev/shm together', {
      timeout: TEST_TIMEOUT,
    }, async () => {
      const limitMiB = SMALL_LIMITS.tmpDiskBytes / MiB;
      const r = await runBuffered(
        sandbox,
        probeJob(['fill', String(limitMiB * 3), '.', '/tmp', '/dev/shm'], {
          limits: SMALL_LIMITS,
          outputs: [`${cwd}/fill-0`],
        }),
      );
      const filled = [...r.stdout.toString().matchAll(/FILLED (\S+) (\d+)/g)].map((m) => Number(m[2]));
      expect(filled, text(r)).toHaveLength(3);
      const total = filled.reduce((a, b) => a + b, 0);
      expect(total, 'bytes written in all').toBeLessThanOrEqual(SMALL_LIMITS.tmpDiskBytes);
      expect(r.exitCode, 'the job saw its writes fail').not.toBe(0);
      expect(r.timedOut).toBe(false);
      expect(r.limitExceeded).toBe('disk');
      expect(r.outputs.size).toBe(0);
      expect(await exists(cwd)).toBe(false);
    });

    it('returns no outputs past their size limit, and says so', { timeout: TEST_TIMEOUT }, async () => {
      const out = `${cwd}/fill-0`;
      const r = await runBuffered(
        sandbox,
        probeJob(['fill', '1', '.'], { limits: SMALL_LIMITS, outputs: [out] }),
      );
      expect(r.stdout.toString(), text(r)).toContain(`FILLED . ${MiB}`);
      expect(r.limitExceeded).toBe('output');
      expect(r.outputs.size).toBe(0);
    });
  });
}
