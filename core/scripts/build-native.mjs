#!/usr/bin/env node
// Builds the native thin client (core/bin/kiln) with the C compiler every kiln user has.
// Without one, core/bin/kiln becomes a link to the Node client, which speaks the same protocol.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const core = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const bin = path.join(core, 'bin', 'kiln');
const nodeCli = path.join(core, 'dist', 'cli', 'kiln.js');
const daemonMain = path.join(core, 'dist', 'daemon', 'main.js');
const source = path.join(core, 'native', 'kiln-client.c');

fs.mkdirSync(path.dirname(bin), { recursive: true });
fs.chmodSync(nodeCli, 0o755);
const cString = (s) => JSON.stringify(s);
const candidates = [process.env.CC, 'cc', 'gcc', 'clang'].filter(Boolean);
const tmp = `${bin}.tmp-${process.pid}`;
let built = false;
for (const cc of candidates) {
  const result = spawnSync(
    cc,
    [
      '-O2',
      '-Wall',
      '-Werror',
      `-DKILN_NODE=${cString(process.execPath)}`,
      `-DKILN_NODE_CLI=${cString(nodeCli)}`,
      `-DKILN_DAEMON_MAIN=${cString(daemonMain)}`,
      source,
      '-o',
      tmp,
    ],
    { stdio: ['ignore', 'inherit', 'inherit'], env: { ...process.env, KILN_DISABLE: '1' } },
  );
  if (result.status === 0) {
    fs.renameSync(tmp, bin);
    built = true;
    console.log(`kiln: built the native client with ${cc}: ${path.relative(process.cwd(), bin)}`);
    break;
  }
}
if (!built) {
  fs.rmSync(tmp, { force: true });
  fs.rmSync(bin, { force: true });
  fs.symlinkSync(nodeCli, bin);
  console.warn('kiln: no C compiler found; core/bin/kiln is the Node client (slower per call)');
}
