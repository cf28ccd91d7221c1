import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { PROBE_SOURCE } from './probe-source.js';

/** Compiles the probe with the host's `cc -static`, so it runs in any root, even an empty one. */
export async function buildProbe(dir: string): Promise<Buffer> {
  const src = path.join(dir, 'probe.c');
  const exe = path.join(dir, 'probe');
  await fs.writeFile(src, PROBE_SOURCE);
  await new Promise<void>((resolve, reject) => {
    execFile('cc', ['-static', '-O1', '-o', exe, src], (err, _out, stderr) => {
      if (err)
        reject(new Error(`cannot build the conformance probe with "cc -static": ${stderr || err.message}`));
      else resolve();
    });
  });
  return fs.readFile(exe);
}

/** A TCP server on 127.0.0.1 that counts the connections it receives. */
export async function listenCounting(): Promise<{ port: number; count(): number; close(): Promise<void> }> {
  let connections = 0;
  const server = net.createServer((socket) => {
    connections++;
    socket.destroy();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    port,
    count: () => connections,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

/** Pids of host processes whose command line contains `token`. */
export async function processesWith(token: string): Promise<number[]> {
  const found: number[] = [];
  for (const name of await fs.readdir('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    const cmdline = await fs.readFile(`/proc/${name}/cmdline`, 'utf8').catch(() => '');
    // A zombie has an empty command line and is already dead.
    if (cmdline.includes(token)) found.push(Number(name));
  }
  return found;
}

/** Polls `check` until it returns true or `ms` pass; returns its last answer. */
export async function eventually(check: () => Promise<boolean> | boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  for (;;) {
    if (await check()) return true;
    if (Date.now() > end) return false;
    await new Promise((r) => setTimeout(r, 100));
  }
}

export async function exists(p: string): Promise<boolean> {
  return fs.lstat(p).then(
    () => true,
    () => false,
  );
}

/** Names in a host directory, or none when it cannot be read. */
export async function hostEntries(dir: string): Promise<string[]> {
  return fs.readdir(dir).catch(() => []);
}
