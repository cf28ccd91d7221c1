// Helpers shared by the bench scripts: run a command (throwing with its output on failure), time
// it, take a median, ask whether a tool is installed.
import { spawnSync } from 'node:child_process';

export function sh(argv0, args, opts = {}) {
  const r = spawnSync(argv0, args, { encoding: 'utf8', maxBuffer: 1 << 28, ...opts });
  if (r.status !== 0) {
    throw new Error(`${argv0} ${args.join(' ')} failed (${r.status}):\n${r.stdout}\n${r.stderr}`);
  }
  return r;
}

/** Wall time of one successful run, in seconds. */
export function timed(argv0, args, opts) {
  const t = process.hrtime.bigint();
  sh(argv0, args, opts);
  return Number(process.hrtime.bigint() - t) / 1e9;
}

export const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

export const has = (tool) => spawnSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' }).status === 0;
