/**
 * The scheduler's status as a web page (`GET /` and `/status`): what `GET /api/v1/status` returns,
 * as tables, refreshed every few seconds. Server-rendered, no script. Every text that came from a
 * worker's heartbeat is escaped: a worker is trusted with jobs, not with the operator's browser.
 */
import { createHash } from 'node:crypto';
import type { ClusterStatus, RecentJob, WorkerStatus } from '../api.js';

const ESCAPES: Readonly<Record<string, string>> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
};
export const escapeHtml = (text: unknown): string => String(text).replace(/[&<>"']/g, (c) => ESCAPES[c]!);

const gib = (bytes: number) => `${(bytes / 1024 ** 3).toFixed(1)} GiB`;

function duration(s: number): string {
  if (s < 60) return `${Math.round(s)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

function workerRow(w: WorkerStatus): string {
  const load = w.cpus > 0 ? (w.runningJobs / w.cpus).toFixed(2) : '-';
  const cells = [
    w.id,
    w.hostTriple,
    w.url,
    `${w.runningJobs} / ${w.maxJobs}`,
    load,
    `${w.cpus} × ${w.cpuModel}`,
    gib(w.memoryBytes),
    w.sandbox,
    w.resolvers.join(', '),
    w.toolchains,
    w.version,
    `${(w.lastHeartbeatMsAgo / 1000).toFixed(1)} s ago`,
    `${w.finishedJobs} / ${w.failedJobs}`,
    w.lastFailure ? `${duration(w.lastFailure.msAgo / 1000)} ago: ${w.lastFailure.reason}` : '-',
  ];
  return `<tr>${cells.map((c) => `<td>${escapeHtml(c)}</td>`).join('')}</tr>`;
}

const WORKER_HEAD = [
  'worker',
  'host triple',
  'URL',
  'jobs',
  'jobs per core',
  'CPUs',
  'memory',
  'sandbox',
  'resolvers',
  'toolchains',
  'version',
  'heartbeat',
  'jobs finished / failed',
  'last failure',
];

function recentRow(j: RecentJob): string {
  const cells = [
    `${duration(j.endedMsAgo / 1000)} ago`,
    j.client ?? '-',
    j.hostTriple ?? '-',
    j.workerId,
    j.jobId,
    j.state,
    `${(j.durationMs / 1000).toFixed(1)} s`,
    j.reason ?? '',
  ];
  return `<tr>${cells.map((c) => `<td>${escapeHtml(c)}</td>`).join('')}</tr>`;
}

const RECENT_HEAD = ['ended', 'client', 'pool', 'worker', 'job', 'state', 'time', 'why it failed'];

const STYLE = `
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin-bottom: 1em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
th { background: #f3f3f3; }
`;

/**
 * Sent with the page (and its 401): nothing may load, run or frame it but its own style sheet,
 * named by hash. Should a worker's text ever slip through unescaped, it still runs no script.
 */
export const STATUS_PAGE_HEADERS: Readonly<Record<string, string>> = {
  'cache-control': 'no-store',
  'content-security-policy': `default-src 'none'; style-src 'sha256-${createHash('sha256').update(STYLE).digest('base64')}'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'`,
  'x-frame-options': 'DENY',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
};

export function renderStatusPage(status: ClusterStatus, refreshS = 5): string {
  const t = status.totals;
  const totals: [string, unknown][] = [
    ['workers', t.workers],
    ['pools', t.pools],
    ['CPUs', t.cpus],
    ['running jobs', `${t.runningJobs} / ${t.maxJobs}`],
    ['allocations', t.allocations],
    ['answered "no capacity"', t.noCapacity],
    ['jobs lost with their worker', t.lostJobs],
  ];
  const pools = status.pools.map(
    (p) => `<h2>${escapeHtml(p.hostTriple)}</h2>
<p>${escapeHtml(p.workers.length)} worker(s), ${escapeHtml(p.cpus)} CPUs, ${escapeHtml(p.runningJobs)} of ${escapeHtml(p.maxJobs)} job slots in use; ${escapeHtml(p.allocations)} jobs allocated, ${escapeHtml(p.noCapacity)} requests answered "no capacity"</p>
<table><thead><tr>${WORKER_HEAD.map((h) => `<th>${h}</th>`).join('')}</tr></thead>
<tbody>${p.workers.map(workerRow).join('\n')}</tbody></table>`,
  );
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="${refreshS}">
<title>kiln scheduler</title>
<style>${STYLE}</style></head>
<body>
<h1>kiln scheduler</h1>
<p>version ${escapeHtml(status.version)} on ${escapeHtml(status.schedulerHostTriple)}, up ${duration(status.uptimeS)}; this page refreshes every ${refreshS} s (JSON: <code>/api/v1/status</code>)</p>
<table><tbody>${totals.map(([k, v]) => `<tr><th>${k}</th><td>${escapeHtml(v)}</td></tr>`).join('')}</tbody></table>
${pools.length ? pools.join('\n') : '<p>No worker has registered yet.</p>'}
${
  status.unserved.length
    ? `<h2>Asked for, no pool</h2>
<table><thead><tr><th>host triple</th><th>answered "no capacity"</th></tr></thead>
<tbody>${status.unserved.map((u) => `<tr><td>${escapeHtml(u.hostTriple)}</td><td>${escapeHtml(u.noCapacity)}</td></tr>`).join('\n')}</tbody></table>`
    : ''
}
<h2>Recent jobs</h2>
${
  status.recentJobs.length
    ? `<table><thead><tr>${RECENT_HEAD.map((h) => `<th>${h}</th>`).join('')}</tr></thead>
<tbody>${status.recentJobs.map(recentRow).join('\n')}</tbody></table>`
    : '<p>No job has ended yet.</p>'
}
</body></html>
`;
}
