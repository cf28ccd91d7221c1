import { type SpawnSyncOptions, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const NATIVE_CLIENT = path.join(root, 'core', 'bin', 'kiln');
export const NODE_CLIENT = path.join(root, 'core', 'dist', 'cli', 'kiln.js');
export type ClientKind = 'native' | 'node';

export interface Run {
  readonly status: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

export interface StatsJson {
  stats: {
    requests: number;
    hitsDirect: number;
    hitsPreprocessed: number;
    misses: number;
    compileFailed: number;
    nonCacheable: Record<string, number>;
    errors: Record<string, number>;
    languages: Record<string, LanguageCounts>;
  };
  cacheSize: number;
}

/** `--show-stats` counts per language group (C, C++, Rust, CUDA…). */
export interface LanguageCounts {
  hits: number;
  misses: number;
  failed: number;
  uncached: number;
}

/**
 * An isolated kiln installation for one test: its own runtime dir (so its own daemon), cache dir
 * and HOME, and a work dir. The daemon is real and is stopped by dispose().
 */
export class KilnSandbox {
  readonly dir: string;
  readonly work: string;
  readonly env: NodeJS.ProcessEnv;
  readonly client: string;

  constructor(
    readonly kind: ClientKind = 'native',
    extraEnv: NodeJS.ProcessEnv = {},
    /** Runs the client through this program instead (e.g. kiln on another architecture); gets dir. */
    client?: (dir: string) => string,
  ) {
    // Short paths: unix socket paths are limited to 108 bytes.
    this.dir = fs.mkdtempSync(path.join('/tmp', 'kt-'));
    this.work = path.join(this.dir, 'work');
    fs.mkdirSync(this.work);
    this.client = client?.(this.dir) ?? (kind === 'native' ? NATIVE_CLIENT : NODE_CLIENT);
    const { NODE_EXTRA_CA_CERTS: _, ...base } = process.env;
    this.env = {
      ...base,
      HOME: this.dir,
      XDG_CONFIG_HOME: path.join(this.dir, 'config'),
      KILN_RUNTIME_DIR: path.join(this.dir, 'rt'),
      KILN_CACHE_DIR: path.join(this.dir, 'cache'),
      KILN_LOG_LEVEL: 'debug',
      LANG: 'C',
      LC_ALL: 'C',
      ...extraEnv,
    };
  }

  /** Writes the user's config.toml (under XDG_CONFIG_HOME), as a user would. */
  writeConfig(text: string): void {
    const dir = path.join(this.env.XDG_CONFIG_HOME!, 'kiln');
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'config.toml'), text);
  }

  get cacheDir(): string {
    return this.env.KILN_CACHE_DIR!;
  }

  private lastWrite = 0;

  file(rel: string, content: string | Buffer): string {
    const file = path.join(this.work, rel);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, content);
    this.lastWrite = Date.now();
    return file;
  }

  /**
   * kiln keeps a header out of direct mode when it changed within 50 ms of a compile (it may have
   * changed while being read). Tests that expect direct hits wait that long after writing files.
   */
  private settle(): void {
    const wait = this.lastWrite + 80 - Date.now();
    if (wait > 0) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, wait);
  }

  read(rel: string): Buffer {
    return fs.readFileSync(path.join(this.work, rel));
  }

  run(argv: readonly string[], opts: SpawnSyncOptions = {}): Run {
    const r = spawnSync(argv[0]!, argv.slice(1), {
      cwd: this.work,
      env: this.env,
      encoding: 'utf8',
      timeout: 120_000,
      ...opts,
    });
    if (r.error) throw r.error;
    return { status: r.status, signal: r.signal, stdout: String(r.stdout), stderr: String(r.stderr) };
  }

  kiln(args: readonly string[], opts: SpawnSyncOptions = {}): Run {
    this.settle();
    return this.run([this.client, ...args], opts);
  }

  /** Runs a command asynchronously (for concurrent builds). */
  runAsync(argv: readonly string[], cwd = this.work, env = this.env): Promise<Run> {
    return new Promise((resolve, reject) => {
      const child = spawn(argv[0]!, argv.slice(1), { cwd, env });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (c) => (stdout += c));
      child.stderr.on('data', (c) => (stderr += c));
      child.on('error', reject);
      child.on('close', (status, signal) => resolve({ status, signal, stdout, stderr }));
    });
  }

  stats(): StatsJson {
    const r = this.kiln(['--show-stats', '--stats-format', 'json']);
    if (r.status !== 0) throw new Error(`--show-stats failed: ${r.stderr}`);
    return JSON.parse(r.stdout) as StatsJson;
  }

  /** One language group's counters; zeros when it has none yet. */
  languageStats(group: string): LanguageCounts {
    return this.stats().stats.languages[group] ?? { hits: 0, misses: 0, failed: 0, uncached: 0 };
  }

  daemonPid(): number | undefined {
    try {
      return Number(fs.readFileSync(path.join(this.env.KILN_RUNTIME_DIR!, 'daemon.pid'), 'utf8'));
    } catch {
      return undefined;
    }
  }

  log(): string {
    try {
      return fs.readFileSync(path.join(this.env.KILN_RUNTIME_DIR!, 'daemon.log'), 'utf8');
    } catch {
      return '';
    }
  }

  /**
   * Stops the daemon and waits for it to exit: it answers "stop" before it finishes its writes to
   * remote tiers and its last stats flush. The sandbox stays usable (the next call starts a daemon).
   */
  stopAndWait(ms = 15_000): void {
    const pid = this.daemonPid();
    this.kiln(['--stop-server']);
    const end = Date.now() + ms;
    while (pid && Date.now() < end && fs.existsSync(`/proc/${pid}`)) {
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
    }
  }

  dispose(): void {
    this.stopAndWait();
    removeTree(this.dir);
  }
}

/**
 * Removes a test's directory, unmounting first what a killed worker left mounted in it (a bwrap
 * job's tmpfs: a worker cleans its own leftovers only when it starts again).
 */
export function removeTree(dir: string): void {
  const info = fs.existsSync('/proc/self/mountinfo') ? fs.readFileSync('/proc/self/mountinfo', 'utf8') : '';
  const mounts = info
    .split('\n')
    .map((line) => line.split(' ')[4] ?? '')
    .filter((p) => p.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
  for (const m of mounts) spawnSync('umount', ['-l', m], { stdio: 'ignore' });
  fs.rmSync(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 });
}

export const tmpDir = (prefix = 'kt-') => fs.mkdtempSync(path.join(os.tmpdir(), prefix));
