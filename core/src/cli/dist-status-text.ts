/**
 * `kiln --dist-status` for people: the scheduler's status as aligned text, one block per pool,
 * then where the last jobs went. `--json` prints the status as the scheduler sent it.
 */
import type { ClusterStatus, RecentJob, WorkerStatus } from '../cluster/api.js';

/** Rows of cells as columns padded to their widest cell, each line indented by `indent`. */
export function columns(rows: readonly (readonly string[])[], indent = '  '): string {
  const widths: number[] = [];
  for (const row of rows) for (const [i, c] of row.entries()) widths[i] = Math.max(widths[i] ?? 0, c.length);
  return rows
    .map(
      (row) => `${indent}${row.map((c, i) => (i === row.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')}`,
    )
    .join('\n');
}

function ago(ms: number): string {
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  return `${Math.floor(s / 3600)} h ago`;
}

function uptime(s: number): string {
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

const WORKER_HEAD = [
  'worker',
  'jobs',
  'load',
  'CPUs',
  'toolchains',
  'sandbox',
  'heartbeat',
  'finished/failed',
];

function workerRow(w: WorkerStatus): string[] {
  return [
    w.id,
    `${w.runningJobs}/${w.maxJobs}`,
    (w.runningJobs / Math.max(1, w.cpus)).toFixed(2),
    `${w.cpus} × ${w.cpuModel}`,
    String(w.toolchains),
    w.sandbox,
    ago(w.lastHeartbeatMsAgo),
    `${w.finishedJobs}/${w.failedJobs}${w.lastFailure ? ` (last: ${w.lastFailure.reason})` : ''}`,
  ];
}

const RECENT_HEAD = ['ended', 'client', 'pool', 'worker', 'result', 'time'];

function recentRow(j: RecentJob): string[] {
  return [
    ago(j.endedMsAgo),
    j.client ?? '-',
    j.hostTriple ?? '-',
    j.workerId,
    j.state === 'failed' ? `failed: ${j.reason ?? ''}` : 'finished',
    `${(j.durationMs / 1000).toFixed(1)} s`,
  ];
}

export function formatDistStatus(schedulerUrl: string, s: ClusterStatus): string {
  const t = s.totals;
  const out = [
    `scheduler ${schedulerUrl}: kiln ${s.version} on ${s.schedulerHostTriple}, up ${uptime(s.uptimeS)}`,
    `${plural(t.workers, 'worker')} in ${plural(t.pools, 'pool')}, ${t.cpus} CPUs, ${t.runningJobs} of ${t.maxJobs} job slots in use; ${t.allocations} jobs allocated, ${t.noCapacity} answered "no capacity", ${t.lostJobs} lost with their worker`,
  ];
  for (const p of s.pools) {
    out.push(
      '',
      `pool ${p.hostTriple}: ${plural(p.workers.length, 'worker')}, ${p.cpus} CPUs, ${p.runningJobs}/${p.maxJobs} slots in use, ${p.allocations ?? 0} allocated, ${p.noCapacity ?? 0} "no capacity"`,
      columns([WORKER_HEAD, ...p.workers.map(workerRow)]),
    );
  }
  if (s.pools.length === 0) out.push('', 'no worker has registered yet');
  for (const u of s.unserved ?? [])
    out.push('', `no pool for ${u.hostTriple}: ${u.noCapacity} requests answered "no capacity"`);
  const recent = s.recentJobs ?? [];
  out.push('', recent.length ? 'recent jobs, newest first:' : 'no job has ended yet');
  if (recent.length) out.push(columns([RECENT_HEAD, ...recent.map(recentRow)]));
  return `${out.join('\n')}\n`;
}
