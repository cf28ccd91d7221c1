/**
 * The composition roots give plugins their context and their own config tables: a worker loads a
 * sandbox and a resolver by file path, the daemon loads a resolver and asks it before the built-in
 * "archive" one. Real processes: a scheduler and a worker, and the daemon behind a real client.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEFAULT_JOB_LIMITS } from '@kiln/plugins';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import {
  type ClusterFiles,
  clusterFiles,
  type ServerProcess,
  startServer,
  waitForWorkers,
  writeSchedulerConfig,
  writeWorkerConfig,
} from './helpers/cluster.js';
import { KilnSandbox, removeTree } from './helpers/kiln.js';
import { have } from './helpers/prereq.js';

const fixtures = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'plugins');
const CONTEXT_SANDBOX = path.join(fixtures, 'context-sandbox.mjs');
const RECORDING_RESOLVER = path.join(fixtures, 'recording-resolver.mjs');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-plugin-context-'));
const servers: ServerProcess[] = [];
let sb: KilnSandbox | undefined;

afterEach(() => sb?.dispose());
afterAll(async () => {
  for (const s of servers) await s.stop();
  removeTree(tmp);
});

describe.skipIf(!have('bwrap'))('plugin context', () => {
  it('a worker gives a sandbox and a resolver loaded by path their context and config tables', async () => {
    const files: ClusterFiles = clusterFiles(path.join(tmp, 'cluster'));
    const seen = path.join(tmp, 'seen.json');
    const resolverLog = path.join(tmp, 'worker-resolver.log');
    const scheduler = await startServer(['scheduler', '--config', writeSchedulerConfig(files)]);
    servers.push(scheduler);
    const worker = await startServer([
      'worker',
      '--config',
      writeWorkerConfig(
        files,
        'w-ctx',
        scheduler.url,
        `sandbox = "${CONTEXT_SANDBOX}"
resolvers = ["${RECORDING_RESOLVER}"]
[sandbox_config]
out = "${seen}"
[resolver_config."${RECORDING_RESOLVER}"]
log = "${resolverLog}"
mark = "worker"`,
      ),
    ]);
    servers.push(worker);
    const ctx = JSON.parse(fs.readFileSync(seen, 'utf8'));
    expect(ctx).toEqual({
      workDir: path.join(files.dir, 'w-ctx', 'plugins'),
      workDirExists: true,
      hostTriple: `${os.arch() === 'arm64' ? 'aarch64' : 'x86_64'}-unknown-linux-gnu`,
      workerId: 'w-ctx',
      limits: DEFAULT_JOB_LIMITS,
      maxJobs: 2,
    });
    expect(worker.output()).toContain('context-probe: registered');
    expect(fs.readFileSync(resolverLog, 'utf8')).toBe(`register mark=worker host=${ctx.hostTriple}\n`);
    const status = await waitForWorkers(scheduler.url, files.clientToken, 1, 5_000);
    const w = status.pools[0]!.workers[0]!;
    expect(w.sandbox).toBe('bwrap');
    expect([...w.resolvers].sort()).toEqual(['archive', 'recording']);
  });

  it('the daemon loads a resolver with its table and asks it before the built-in archive resolver', () => {
    sb = new KilnSandbox('native');
    const log = path.join(sb.dir, 'resolver.log');
    const configDir = path.join(sb.env.XDG_CONFIG_HOME!, 'kiln');
    fs.mkdirSync(configDir, { recursive: true });
    // A relative path: resolved from the config file's directory, where the plugin's own
    // dependencies are found too (here: @kiln/plugins through a node_modules link).
    fs.copyFileSync(RECORDING_RESOLVER, path.join(configDir, 'recording.mjs'));
    fs.symlinkSync(
      path.join(fixtures, '..', '..', '..', 'node_modules'),
      path.join(configDir, 'node_modules'),
    );
    fs.writeFileSync(
      path.join(configDir, 'config.toml'),
      `[dist]
scheduler_url = "https://127.0.0.1:9"
resolvers = ["./recording.mjs"]
[dist.resolver_config."./recording.mjs"]
log = "${log}"
mark = "daemon"
`,
    );
    sb.file('a.c', 'int a(void) { return 7; }\n');
    expect(sb.run(['gcc', '-c', 'a.c', '-o', 'ref.o']).status).toBe(0);
    const r = sb.kiln(['gcc', '-c', 'a.c']);
    expect(r.status, r.stderr).toBe(0);
    expect(sb.read('a.o').equals(sb.read('ref.o'))).toBe(true);
    const lines = fs.readFileSync(log, 'utf8').trim().split('\n');
    expect(lines[0]).toMatch(/^register mark=daemon host=\S+-linux-gnu$/);
    // Asked first for a stored package, then to package it; it declines both, so the built-in
    // archive resolver packages gcc (in the background: this compile ran locally meanwhile).
    expect(lines.slice(1).map((l) => l.split(' ')[0])).toEqual(['find', 'package']);
    expect(lines[1]).toMatch(/^find \/.*gcc/);
    expect(sb.stats().stats.distLocal).toEqual({ 'toolchain being packaged': 1 });
  });

  it('a resolver the daemon cannot load stops it with an error naming the plugin; compiles still work', () => {
    sb = new KilnSandbox('native');
    const configDir = path.join(sb.env.XDG_CONFIG_HOME!, 'kiln');
    fs.mkdirSync(configDir, { recursive: true });
    fs.writeFileSync(
      path.join(configDir, 'config.toml'),
      '[dist]\nscheduler_url = "https://127.0.0.1:9"\nresolvers = ["./missing-resolver.mjs"]\n',
    );
    sb.file('a.c', 'int a;\n');
    const r = sb.kiln(['gcc', '-c', 'a.c']);
    expect(r.status).toBe(0);
    expect(r.stderr).toContain('missing-resolver.mjs');
    expect(fs.existsSync(path.join(sb.work, 'a.o'))).toBe(true);
  });
});
