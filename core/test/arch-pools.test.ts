import { describe, expect, it } from 'vitest';
import type { WorkerHeartbeat } from '../src/cluster/api.js';
import { ArchPoolScheduler } from '../src/cluster/scheduler/arch-pools.js';
import { renderStatusPage } from '../src/cluster/scheduler/status-page.js';

const X86 = 'x86_64-unknown-linux-gnu';
const ARM = 'aarch64-unknown-linux-gnu';
const D1 = 'a'.repeat(64);

function worker(id: string, over: Partial<WorkerHeartbeat> = {}): WorkerHeartbeat {
  return {
    id,
    url: `http://127.0.0.1:1/${id}`,
    hostTriple: X86,
    os: 'Linux',
    cpuModel: 'test',
    cpus: 4,
    memoryBytes: 1e9,
    maxJobs: 4,
    sandbox: 'bwrap',
    resolvers: ['archive'],
    toolchains: [],
    toolchainUploads: 0,
    runningJobs: [],
    jobKey: 'k'.repeat(43),
    version: '0',
    ...over,
  };
}

function make(now: { t: number }) {
  return new ArchPoolScheduler({
    workerTimeoutMs: 1000,
    assignTimeoutMs: 5000,
    version: '0',
    now: () => now.t,
  });
}

describe('ArchPoolScheduler', () => {
  it('keeps one pool per host triple and routes a toolchain only to workers that can run it', () => {
    const now = { t: 0 };
    const s = make(now);
    s.heartbeat(worker('x1'));
    s.heartbeat(worker('a1', { hostTriple: ARM }));
    expect(s.status().pools.map((p) => p.hostTriple)).toEqual([ARM, X86]);
    for (let i = 0; i < 4; i++) {
      const a = s.allocate({ kind: 'archive', digest: D1, hostTriples: [ARM] });
      expect(a.ok && a.worker.info.id).toBe('a1');
    }
    const full = s.allocate({ kind: 'archive', digest: D1, hostTriples: [ARM] });
    expect(full).toEqual({ ok: false, reason: 'every eligible worker is busy', noWorker: false });
    const none = s.allocate({ kind: 'archive', digest: D1, hostTriples: ['riscv64gc-unknown-linux-gnu'] });
    expect(none.ok).toBe(false);
    expect(!none.ok && none.reason).toMatch(/no worker can run/);
    expect(!none.ok && none.noWorker).toBe(true);
    const rustup = s.allocate({ kind: 'rustup', digest: D1, hostTriples: [X86] });
    expect(rustup.ok).toBe(false);
  });

  it('prefers a worker holding the toolchain, then the least loaded per core', () => {
    const now = { t: 0 };
    const s = make(now);
    s.heartbeat(worker('big', { cpus: 16, maxJobs: 16 }));
    s.heartbeat(worker('small', { cpus: 2, maxJobs: 2, toolchains: [D1] }));
    const first = s.allocate({ kind: 'archive', digest: D1, hostTriples: [X86] });
    expect(first.ok && [first.worker.info.id, first.hasToolchain]).toEqual(['small', true]);
    const second = s.allocate({ kind: 'archive', digest: D1, hostTriples: [X86] });
    expect(second.ok && second.worker.info.id).toBe('small');
    // small is full now: the next job goes to big, which must receive the toolchain.
    const third = s.allocate({ kind: 'archive', digest: D1, hostTriples: [X86] });
    expect(third.ok && [third.worker.info.id, third.hasToolchain]).toEqual(['big', false]);
    const other = 'b'.repeat(64);
    s.heartbeat(worker('mid', { cpus: 4, maxJobs: 4 }));
    // Nobody holds `other`: big has 1/16 load, mid 0/4.
    const fourth = s.allocate({ kind: 'archive', digest: other, hostTriples: [X86] });
    expect(fourth.ok && fourth.worker.info.id).toBe('mid');
  });

  it('passes over excluded workers (the one a job just failed on)', () => {
    const s = make({ t: 0 });
    s.heartbeat(worker('x1', { toolchains: [D1] }));
    s.heartbeat(worker('x2'));
    const tc = { kind: 'archive', digest: D1, hostTriples: [X86] };
    const a = s.allocate(tc, ['x1']);
    expect(a.ok && [a.worker.info.id, a.hasToolchain]).toEqual(['x2', false]);
    expect(s.allocate(tc, ['x1', 'x2'])).toEqual({
      ok: false,
      reason: 'every other eligible worker is busy',
      noWorker: false,
    });
    const b = s.allocate(tc);
    expect(b.ok && b.worker.info.id).toBe('x1');
  });

  it('frees slots when jobs finish and marks a silent worker’s jobs failed', () => {
    const now = { t: 0 };
    const s = make(now);
    s.heartbeat(worker('w', { maxJobs: 1 }));
    const a = s.allocate({ kind: 'archive', digest: D1, hostTriples: [X86] });
    if (!a.ok) throw new Error('no allocation');
    expect(s.allocate({ kind: 'archive', digest: D1, hostTriples: [X86] }).ok).toBe(false);
    expect(s.finish(a.jobId, 'someone-else', false)).toBe(false);
    expect(s.finish(a.jobId, 'w', false)).toBe(true);
    expect(s.job(a.jobId)?.state).toBe('finished');
    const b = s.allocate({ kind: 'archive', digest: D1, hostTriples: [X86] });
    if (!b.ok) throw new Error('no allocation');
    now.t = 2000;
    expect(s.expire()).toEqual(['w']);
    expect(s.job(b.jobId)).toMatchObject({ state: 'failed', reason: 'worker stopped heartbeating' });
    expect(s.status().totals).toMatchObject({ workers: 0, pools: 0, lostJobs: 1 });
  });

  it('forgets assigned jobs the worker never mentions, and adopts the ones it reports (scheduler restart)', () => {
    const now = { t: 0 };
    const s = make(now);
    s.heartbeat(worker('w', { maxJobs: 2 }));
    const a = s.allocate({ kind: 'archive', digest: D1, hostTriples: [X86] });
    if (!a.ok) throw new Error('no allocation');
    now.t = 6000;
    s.heartbeat(worker('w', { maxJobs: 2 }));
    expect(s.job(a.jobId)?.state).toBe('failed');
    expect(s.status().totals.runningJobs).toBe(0);
    // A fresh scheduler learns the running jobs from the heartbeat.
    const fresh = make(now);
    fresh.heartbeat(worker('w', { maxJobs: 2, runningJobs: ['j1', 'j2'] }));
    expect(fresh.allocate({ kind: 'archive', digest: D1, hostTriples: [X86] }).ok).toBe(false);
  });

  it('remembers ended jobs for a while, up to a cap, and running ones as long as they run', () => {
    const now = { t: 0 };
    const s = new ArchPoolScheduler({
      workerTimeoutMs: 1000,
      assignTimeoutMs: 5000,
      version: '0',
      now: () => now.t,
      maxEndedJobs: 5,
    });
    s.heartbeat(worker('w', { maxJobs: 100 }));
    const allocate = () => {
      const a = s.allocate({ kind: 'archive', digest: D1, hostTriples: [X86] });
      if (!a.ok) throw new Error('no allocation');
      return a.jobId;
    };
    const running = [allocate(), allocate()];
    const finished = Array.from({ length: 8 }, () => {
      now.t++;
      const id = allocate();
      expect(s.finish(id, 'w', false)).toBe(true);
      return id;
    });
    expect(finished.filter((id) => s.job(id)).length).toBe(5);
    expect(s.job(finished[0]!)).toBeUndefined();
    expect(s.job(finished[7]!)).toEqual({ state: 'finished', workerId: 'w' });
    expect(s.job(running[0]!)).toEqual({ state: 'assigned', workerId: 'w' });
    expect(s.finish(finished[7]!, 'w', true)).toBe(false);
    expect(s.finish(running[0]!, 'w', true, 'sandbox failed')).toBe(true);
    expect(s.job(running[0]!)).toEqual({ state: 'failed', workerId: 'w', reason: 'sandbox failed' });
    // JOB_MEMORY_MS (10 minutes) later the sweep has forgotten every ended job.
    now.t += 10 * 60_000 + 1;
    s.heartbeat(worker('w', { maxJobs: 100, runningJobs: [running[1]!] }));
    s.expire();
    expect(finished.concat(running[0]!).filter((id) => s.job(id))).toEqual([]);
    expect(s.job(running[1]!)?.state).toBe('assigned');
  });

  it('counts ended jobs per worker, keeps its last failure and the recent jobs, newest first', () => {
    const now = { t: 0 };
    const s = make(now);
    s.heartbeat(worker('w', { maxJobs: 8 }));
    s.heartbeat(worker('v', { maxJobs: 8 }));
    const tc = { kind: 'archive', digest: D1, hostTriples: [X86] };
    const ids = Array.from({ length: 4 }, () => {
      const a = s.allocate(tc, []);
      if (!a.ok) throw new Error(a.reason);
      return [a.jobId, a.worker.info.id] as const;
    });
    now.t = 300;
    expect(s.finish(ids[0]![0], ids[0]![1], false)).toBe(true);
    now.t = 500;
    expect(s.finish(ids[1]![0], ids[1]![1], true)).toBe(true);
    const byId = (id: string) => s.status().pools[0]!.workers.find((w) => w.id === id)!;
    const failedOn = ids[1]![1];
    expect(byId(failedOn).failedJobs).toBe(1);
    expect(byId(failedOn).lastFailure).toEqual({
      jobId: ids[1]![0],
      reason: 'the worker reported it failed (sandbox error, or the client went away)',
      msAgo: 0,
    });
    expect(byId(ids[0]![1]).finishedJobs).toBe(1);
    now.t = 700;
    const recent = s.status().recentJobs;
    expect(recent.map((j) => [j.jobId, j.state, j.durationMs, j.endedMsAgo])).toEqual([
      [ids[1]![0], 'failed', 500, 200],
      [ids[0]![0], 'finished', 300, 400],
    ]);
    const page = renderStatusPage(s.status());
    expect(page).toContain('<th>jobs finished / failed</th>');
    expect(page).toContain('<h2>Recent jobs</h2>');
    expect(page).toContain(`<td>${ids[1]![0]}</td><td>failed</td><td>0.5 s</td>`);
  });
});

describe('fair shares between clients (icecream#628)', () => {
  const cross = { kind: 'archive', digest: D1, hostTriples: [X86] };
  const native = { kind: 'archive', digest: 'b'.repeat(64), hostTriples: [X86] };

  it('an aarch64 client with x86_64 cross toolchains leaves x86_64 clients their share', () => {
    const now = { t: 0 };
    const s = make(now);
    s.heartbeat(worker('x1', { maxJobs: 4 }));
    // The cross-compiling client alone takes every slot: nobody else asked.
    const held = [1, 2, 3, 4].map(() => s.allocate(cross, [], 'pi'));
    expect(held.every((a) => a.ok)).toBe(true);
    // An x86_64 client finds the pool full (and is now known to want it).
    expect(s.allocate(native, [], 'laptop')).toMatchObject({
      ok: false,
      reason: 'every eligible worker is busy',
    });
    // A slot frees up: the cross client, at 3 of 4 while its share is 2, must leave it.
    const first = held[0]!;
    expect(first.ok && s.finish(first.jobId, 'x1', false)).toBe(true);
    now.t += 100;
    expect(s.allocate(cross, [], 'pi')).toEqual({
      ok: false,
      reason: 'fair share: other clients are waiting for this pool',
      noWorker: false,
    });
    const got = s.allocate(native, [], 'laptop');
    expect(got.ok).toBe(true);
    // The laptop, below its share, takes the next free slot too, even while the cross client asks.
    const second = held[1]!;
    expect(second.ok && s.finish(second.jobId, 'x1', false)).toBe(true);
    expect(s.allocate(cross, [], 'pi').ok).toBe(false);
    expect(s.allocate(native, [], 'laptop').ok).toBe(true);
    // Even shares now (2 and 2); when the laptop stops asking, the cross client gets everything again.
    const mine = s.status().pools[0]!;
    expect([mine.allocations, mine.noCapacity]).toEqual([6, 3]);
    now.t += 11_000;
    const third = held[2]!;
    expect(third.ok && s.finish(third.jobId, 'x1', false)).toBe(true);
    expect(s.allocate(cross, [], 'pi').ok).toBe(true);
  });

  it('recent jobs say which client asked and which pool ran them; unserved triples are counted', () => {
    const now = { t: 0 };
    const s = make(now);
    s.heartbeat(worker('x1'));
    const a = s.allocate(native, [], 'laptop');
    expect(a.ok && s.finish(a.jobId, 'x1', false)).toBe(true);
    expect(s.allocate({ ...native, hostTriples: [ARM] }, [], 'pi')).toMatchObject({
      ok: false,
      noWorker: true,
    });
    const st = s.status();
    expect(st.recentJobs.map((j) => [j.client, j.hostTriple, j.workerId, j.state])).toEqual([
      ['laptop', X86, 'x1', 'finished'],
    ]);
    expect(st.unserved).toEqual([{ hostTriple: ARM, noCapacity: 1 }]);
    const page = renderStatusPage(st);
    expect(page).toContain('<td>laptop</td><td>x86_64-unknown-linux-gnu</td><td>x1</td>');
    expect(page).toMatch(/Asked for, no pool<\/h2>[\s\S]*<td>aarch64-unknown-linux-gnu<\/td><td>1<\/td>/);
    expect(page).toContain('1 jobs allocated, 0 requests answered "no capacity"');
  });

  it('a worker that signs off leaves its pool at once and is forgotten once its jobs are reported', () => {
    const now = { t: 0 };
    const s = make(now);
    s.heartbeat(worker('x1', { maxJobs: 2 }));
    const a = s.allocate({ kind: 'archive', digest: D1, hostTriples: [X86] });
    expect(a.ok).toBe(true);
    expect(s.leave('x1')).toBe(true);
    expect(s.status().totals).toMatchObject({ workers: 0, pools: 0 });
    expect(s.allocate({ kind: 'archive', digest: D1, hostTriples: [X86] }).ok).toBe(false);
    // A heartbeat sent before the sign-off and answered after it does not bring the worker back.
    s.heartbeat(worker('x1', { maxJobs: 2, runningJobs: [a.ok ? a.jobId : ''] }));
    expect(s.status().totals.workers).toBe(0);
    // Its running job ends normally; then nothing is left of it.
    expect(s.finish(a.ok ? a.jobId : '', 'x1', false)).toBe(true);
    expect(s.worker('x1')).toBeUndefined();
    expect(s.status().totals.lostJobs).toBe(0);
    expect(s.leave('x1')).toBe(false);
    // The same id started again (a new job key) joins as usual.
    s.heartbeat(worker('x1', { jobKey: 'n'.repeat(43) }));
    expect(s.status().totals.workers).toBe(1);
    // Signing off with no job running forgets it at once.
    expect(s.leave('x1')).toBe(true);
    expect(s.worker('x1')).toBeUndefined();
  });
});
