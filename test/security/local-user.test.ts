/**
 * The local privilege escalation of the review (issue 11, item 1), with a second real user: a
 * local attacker makes the victim's runtime dir in /tmp first and listens on its socket. Were a
 * client to connect, the attacker would get the victim's environment and could answer "run this
 * program" (code execution as the victim, root here). Both clients must refuse, say why, and
 * compile locally; nothing may reach the attacker's socket or be written through their symlink.
 * Needs root to create the user (CI runs as root).
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type ClientKind, KilnSandbox } from '../helpers/kiln.js';

const ATTACKER = 'kiln-attacker';
const isRoot = process.getuid?.() === 0;
if (!isRoot && process.env.CI === 'true')
  throw new Error('test/security/local-user needs root under CI=true');

let uid = 0;
let gid = 0;
const cleanups: (() => void)[] = [];

/** The attacker's fake daemon: accepts connections on `sock` and logs every byte to `log`. */
const FAKE_DAEMON = `
const net = require('node:net'), fs = require('node:fs');
const [sock, log] = process.argv.slice(2);
const server = net.createServer((c) => {
  fs.appendFileSync(log, 'CONNECTION\\n');
  c.on('data', (d) => fs.appendFileSync(log, d));
});
server.listen(sock, () => { fs.chmodSync(sock, 0o777); fs.appendFileSync(log, ''); console.log('ready'); });
`;

/** Disposed last, with its own runtime dir back (so no command goes near the attacker's). */
function track(sb: KilnSandbox): KilnSandbox {
  const own = sb.env.KILN_RUNTIME_DIR;
  cleanups.push(() => {
    sb.env.KILN_RUNTIME_DIR = own;
    sb.dispose();
  });
  return sb;
}

function asAttacker(argv: string[]) {
  return ['setpriv', `--reuid=${uid}`, `--regid=${gid}`, '--clear-groups', '--', ...argv];
}

/** Runs the fake daemon as the attacker; resolves once it listens. */
function startFakeDaemon(dir: string, log: string): Promise<() => void> {
  const script = path.join(dir, 'fake.cjs');
  const [cmd, ...args] = asAttacker([process.execPath, script, path.join(dir, 'daemon.sock'), log]);
  fs.writeFileSync(script, FAKE_DAEMON, { mode: 0o644 });
  fs.chownSync(script, uid, gid);
  const child = spawn(cmd!, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  return new Promise((resolve, reject) => {
    let err = '';
    child.stderr!.on('data', (c) => {
      err += c;
    });
    child.stdout!.on('data', () => resolve(() => child.kill('SIGKILL')));
    child.on('exit', (code) => reject(new Error(`fake daemon exited ${code}: ${err}`)));
  });
}

describe.skipIf(!isRoot)('a local attacker who owns the runtime dir first', () => {
  beforeAll(() => {
    if (spawnSync('id', ['-u', ATTACKER]).status !== 0) {
      const r = spawnSync('useradd', [
        '--system',
        '--no-create-home',
        '--shell',
        '/usr/sbin/nologin',
        ATTACKER,
      ]);
      expect(r.status, r.stderr?.toString()).toBe(0);
    }
    uid = Number(spawnSync('id', ['-u', ATTACKER], { encoding: 'utf8' }).stdout);
    gid = Number(spawnSync('id', ['-g', ATTACKER], { encoding: 'utf8' }).stdout);
    expect(uid).toBeGreaterThan(0);
  });
  afterEach(() => {
    for (const c of cleanups.splice(0).reverse()) c();
  });

  describe.each(['native', 'node'] as ClientKind[])('%s client', (kind) => {
    it('will not talk to the attacker socket in a dir the attacker made: compiles locally, sends nothing', async () => {
      const sb = track(new KilnSandbox(kind, { AWS_SECRET_ACCESS_KEY: 'victim-secret-123' }));
      // The victim's runtime dir, in /tmp itself, made first by the attacker, world-writable.
      const rt = `/tmp/kiln-victim-${path.basename(sb.dir)}`;
      const mk = spawnSync(
        asAttacker(['mkdir', '-m', '0777', rt])[0]!,
        asAttacker(['mkdir', '-m', '0777', rt]).slice(1),
      );
      expect(mk.status, mk.stderr?.toString()).toBe(0);
      cleanups.push(() => fs.rmSync(rt, { recursive: true, force: true }));
      const log = path.join(rt, 'received.log');
      cleanups.push(await startFakeDaemon(rt, log));
      expect(fs.statSync(path.join(rt, 'daemon.sock')).uid).toBe(uid);
      sb.env.KILN_RUNTIME_DIR = rt;
      sb.file('a.c', 'int a(void) { return 42; }\n');
      expect(sb.run(['gcc', '-c', 'a.c', '-o', 'ref.o']).status).toBe(0);
      const r = sb.kiln(['gcc', '-c', 'a.c']);
      expect(r.status, r.stderr).toBe(0);
      expect(r.stderr).toContain('kiln: not using the daemon:');
      expect(r.stderr).toContain(`owned by uid ${uid}`);
      expect(sb.read('a.o').equals(sb.read('ref.o'))).toBe(true);
      // Not one connection, not one byte of the environment, reached the attacker.
      expect(fs.readFileSync(log, 'utf8')).toBe('');
      expect(fs.readdirSync(rt).sort()).toEqual(['daemon.sock', 'fake.cjs', 'received.log']);
    });

    it('will not write through a symlink the attacker planted at the runtime dir', () => {
      const sb = track(new KilnSandbox(kind));
      const rt = `/tmp/kiln-victim-${path.basename(sb.dir)}`;
      const target = `/tmp/kiln-attacker-${path.basename(sb.dir)}`;
      for (const argv of [
        ['mkdir', '-m', '0777', target],
        ['ln', '-s', target, rt],
      ]) {
        const full = asAttacker(argv);
        expect(spawnSync(full[0]!, full.slice(1)).status).toBe(0);
      }
      cleanups.push(() => {
        fs.rmSync(rt, { force: true });
        fs.rmSync(target, { recursive: true, force: true });
      });
      sb.env.KILN_RUNTIME_DIR = rt;
      sb.file('a.c', 'int a;\n');
      const r = sb.kiln(['gcc', '-c', 'a.c']);
      expect(r.status, r.stderr).toBe(0);
      expect(r.stderr).toContain('is a symlink');
      // No daemon.pid, socket or log was written through the link.
      expect(fs.readdirSync(target)).toEqual([]);
      expect(fs.existsSync(path.join(sb.work, 'a.o'))).toBe(true);
    });
  });
});
