/**
 * What scheduler.toml, worker.toml and the client's [dist] say when they are wrong: plain words
 * that name the key and what to write, never a regex, a doubled "expected" or a bare "is required".
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseDistTable } from '../src/cluster/client-config.js';
import { loadSchedulerConfig } from '../src/cluster/scheduler/scheduler-config.js';
import { loadWorkerConfig } from '../src/cluster/worker/worker-config.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-config-messages-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const write = (text: string) => {
  const file = path.join(dir, `c${Math.random().toString(36).slice(2)}.toml`);
  fs.writeFileSync(file, text);
  return file;
};
const NO_ENV = {};

const SCHEDULER_AUTH = '[worker_auth]\ntype = "jwt_hs256"\nsecret_key = "k"\n';
const scheduler = (text: string) => loadSchedulerConfig(write(text), NO_ENV);
const WORKER_AUTH = '[scheduler_auth]\ntype = "jwt_token"\ntoken = "t"\n';
const worker = (top: string, tables = '') =>
  loadWorkerConfig(write(`scheduler_url = "https://127.0.0.1:1"\n${top}\n${WORKER_AUTH}${tables}`), NO_ENV);

/** The message of what `f` throws. */
function messageOf(f: () => unknown): string {
  try {
    f();
  } catch (err) {
    return (err as Error).message;
  }
  throw new Error('expected an error');
}

describe('config messages', () => {
  it('refuses a client token with spaces at load, saying why and what to do', () => {
    const m = messageOf(() =>
      scheduler(`[client_auth]\ntype = "token"\ntoken = "my client token"\n${SCHEDULER_AUTH}`),
    );
    expect(m).toMatch(/"client_auth\.token".*a token without spaces/);
    expect(m).toMatch(/openssl rand -hex 32/);
    expect(m).not.toContain('my client token');
    expect(() =>
      scheduler(`[client_auth]\ntype = "token"\ntoken = "my-client-token"\n${SCHEDULER_AUTH}`),
    ).not.toThrow();
    expect(
      messageOf(() =>
        parseDistTable(
          { scheduler_url: 'https://s:1', auth: { type: 'token', token: 'a b' } },
          'config.toml',
          NO_ENV,
        ),
      ),
    ).toMatch(/"dist\.auth\.token".*a token without spaces/);
  });

  it('takes sizes as byte integers as well as "10G"', () => {
    const c = worker(
      'toolchain_cache_size = 1073741824\nmax_job_input_size = "64M"',
      '[limits]\nmemory = 2147483648\n',
    );
    expect(c.toolchain_cache_size).toBe(1024 ** 3);
    expect(c.max_job_input_size).toBe(64 * 1024 ** 2);
    expect(c.limits.memoryBytes).toBe(2 * 1024 ** 3);
    expect(
      parseDistTable({ scheduler_url: 'https://s:1', toolchain_cache_size: 5000 }, 'config.toml', NO_ENV)
        .toolchain_cache_size,
    ).toBe(5000);
    expect(messageOf(() => worker('max_toolchain_size = -1'))).toMatch(
      /"max_toolchain_size".*: expected a size such as "10G", "512M" or a number of bytes, got number -1$/,
    );
  });

  it('says what a wrong type is without a doubled "expected"', () => {
    const m = messageOf(() => worker('max_jobs = "4"'));
    expect(m).toMatch(/invalid value for "max_jobs" in .*: expected an integer, got string "4"$/);
    expect(m).not.toMatch(/expected expected/);
    expect(messageOf(() => worker('max_jobs = 0'))).toMatch(/expected an integer of at least 1, got 0$/);
  });

  it('names a missing key in words', () => {
    const m = messageOf(() => loadWorkerConfig(write(WORKER_AUTH), NO_ENV));
    expect(m).toMatch(/^"scheduler_url" is missing from .*: it is required/);
    expect(m).not.toMatch(/expected is required/);
  });

  it('describes the form a key takes, not its regex', () => {
    const m = messageOf(() => worker('id = "my worker!"'));
    expect(m).toMatch(/"id".*expected at most 100 letters, digits, and _ \. : -, got "my worker!"$/);
    expect(m).not.toMatch(/\^|\$|\{1,100\}/);
    expect(messageOf(() => worker('host_triple = "x86"'))).toMatch(
      /expected a host triple such as x86_64-unknown-linux-gnu, got "x86"$/,
    );
    expect(messageOf(() => worker('log_level = "loud"'))).toMatch(
      /expected one of "error", "warn", "info", "debug", got "loud"$/,
    );
  });

  it('gives the line of a TOML syntax error', () => {
    const m = messageOf(() => loadWorkerConfig(write('id = "w"\nmax_jobs = = 2\n'), NO_ENV));
    expect(m).toMatch(/^cannot parse config file .*: invalid value at line 2, column \d+ \(TOML syntax/);
  });
});
