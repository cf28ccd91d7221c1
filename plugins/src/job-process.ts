/**
 * What every sandbox needs around the processes it runs: a capped capture of a job's output,
 * signal names, running a host tool (mount, umount), and a job's own tmpfs.
 */
import { execFile } from 'node:child_process';
import { constants } from 'node:os';

/** Keeps the first `max` bytes of a stream and drains the rest, so a chatty job cannot fill memory. */
export function captureOutput(stream: NodeJS.ReadableStream, max: number): () => Buffer {
  const chunks: Buffer[] = [];
  let size = 0;
  stream.on('data', (chunk: Buffer) => {
    if (size >= max) return;
    const part = chunk.subarray(0, max - size);
    chunks.push(part);
    size += part.length;
  });
  return () => Buffer.concat(chunks, size);
}

// First name wins: SIGABRT over its alias SIGIOT, as Node itself reports them.
const SIGNAL_NAMES = new Map<number, string>();
for (const [name, n] of Object.entries(constants.signals))
  if (!SIGNAL_NAMES.has(n)) SIGNAL_NAMES.set(n, name);

/** The name of signal `n` ("SIGKILL"); undefined for a number that is no signal here. */
export function signalName(n: number): string | undefined {
  return SIGNAL_NAMES.get(n);
}

/** Runs a host tool (10 s at most); rejects with its stderr. */
export function runTool(file: string, args: readonly string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { timeout: 10_000 }, (err, _out, stderr) => {
      if (err) reject(new Error(`${file} ${args.join(' ')}: ${(stderr || err.message).trim()}`));
      else resolve();
    });
  });
}

// A tmpfs inode costs kernel memory its size limit does not count: bound the number of files too.
const MAX_INODES = 262_144;

/**
 * Mounts a tmpfs of `sizeBytes` at `dir` (root only): a job's writable space that never touches
 * the worker's disk. `name` shows in the mount table (e.g. "kiln-job").
 */
export function mountJobTmpfs(dir: string, sizeBytes: number, name: string): Promise<void> {
  const options = `size=${sizeBytes},nr_inodes=${MAX_INODES},mode=0711,nosuid,nodev`;
  return runTool('mount', ['-t', 'tmpfs', '-o', options, name, dir]);
}

/** Unmounts `dir`, lazily when something still holds it. */
export function unmountJobTmpfs(dir: string): Promise<void> {
  return runTool('umount', [dir]).catch(() => runTool('umount', ['-l', dir]));
}
