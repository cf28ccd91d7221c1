import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DEFAULT_JOB_LIMITS } from '@kiln/plugins';
import { afterAll, describe, expect, it } from 'vitest';
import { loadWorkerConfig } from '../src/cluster/worker/worker-config.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-worker-config-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
const BASE = 'scheduler_url = "https://127.0.0.1:1"\n[scheduler_auth]\ntype = "jwt_token"\ntoken = "t"\n';
const load = (extra: string) => {
  const file = path.join(dir, `w${Math.random().toString(36).slice(2)}.toml`);
  fs.writeFileSync(file, `${BASE}${extra}`);
  return loadWorkerConfig(file);
};

describe('worker.toml [limits]', () => {
  it('defaults to limits sized for compilers', () => {
    expect(load('').limits).toEqual(DEFAULT_JOB_LIMITS);
  });

  it.skipIf(process.getuid?.() !== 0)(
    "keeps a root worker's toolchains where job uids can reach them",
    () => {
      expect(load('').cache_dir).toBe('/var/cache/kiln-worker');
    },
  );

  it('reads processes and sizes', () => {
    const c = load('[limits]\nprocesses = 64\nmemory = "2G"\ntmp_disk = "512M"\noutput_size = "100M"\n');
    expect(c.limits).toEqual({
      processes: 64,
      memoryBytes: 2 * 1024 ** 3,
      tmpDiskBytes: 512 * 1024 ** 2,
      outputBytes: 100 * 1024 ** 2,
    });
  });

  it.each([
    ['[limits]\nprocesses = 0\n', /limits\.processes/],
    ['[limits]\nmemory = "lots"\n', /limits\.memory.*expected a size such as "10G"/],
    ['[limits]\ntmp_disk = "0"\n', /limits\.tmp_disk/],
    ['[limits]\ncpu = 1\n', /limits\.cpu/],
  ])('refuses %j naming the key', (extra, message) => {
    expect(() => load(extra)).toThrow(message);
  });
});
