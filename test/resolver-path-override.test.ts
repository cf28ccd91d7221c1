/**
 * sccache-dist's path_override end to end: a client calls a cross compiler at a path of its own
 * (here a link in a tools directory, as a macOS or Windows client would have its own), the
 * [[dist.toolchains]] entry maps it to a Linux archive of Debian's aarch64-linux-gnu-gcc at another
 * path, the client preprocesses and a bubblewrap worker compiles with the archive's compiler. zlib's
 * objects must match a plain local cross build byte for byte. Bad entries: a clear error at start or
 * a counted local compile.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NODE_CLIENT } from './helpers/kiln.js';
import { have } from './helpers/prereq.js';
import { differing, ResolverCluster, sum } from './helpers/resolver-cluster.js';
import { debianSource } from './helpers/sources.js';

const CROSS = '/usr/bin/aarch64-linux-gnu-gcc';
const ready = have('bwrap') && have('make') && have('aarch64-linux-gnu-gcc');

describe.skipIf(!ready)('path_override: a cross build through a worker', () => {
  const c = new ResolverCluster();
  let dir = '';
  let archive = '';
  let clientCc = '';
  let local: Map<string, Buffer>;

  const entry = (over: Record<string, string> = {}) => {
    const e = { compiler_executable: clientCc, archive, archive_compiler_executable: CROSS, ...over };
    return `[[dist.toolchains]]\ntype = "path_override"\n${Object.entries(e)
      .map(([k, v]) => `${k} = ${JSON.stringify(v)}`)
      .join('\n')}\n`;
  };

  beforeAll(async () => {
    await c.start('resolvers = ["path-override"]');
    archive = path.join(c.sb.dir, 'archives', 'aarch64-linux-gnu.tar.gz');
    const packed = c.sb.run([process.execPath, NODE_CLIENT, '--package-toolchain', CROSS, archive]);
    expect(packed.status, packed.stderr).toBe(0);
    // The client's own path for the compiler, not the archive's.
    clientCc = path.join(c.sb.dir, 'client-tools', 'bin', 'aarch64-linux-gnu-gcc');
    fs.mkdirSync(path.dirname(clientCc), { recursive: true });
    fs.symlinkSync(CROSS, clientCc);
    dir = path.join(c.sb.work, 'zlib');
    fs.cpSync(debianSource('zlib'), dir, { recursive: true });
    const conf = c.sb.run(['./configure', '--static'], { cwd: dir, env: { ...c.sb.env, CC: CROSS } });
    expect(conf.status, conf.stderr).toBe(0);
    local = c.buildZlib(dir, CROSS);
  }, 180_000);
  afterAll(() => c.stop());

  it('compiles zlib on the worker with the archive compiler: objects identical to a local cross build', () => {
    c.useClientConfig(`force_remote_build = true\n${entry({ host_triple: 'x86_64-unknown-linux-gnu' })}`);
    c.sb.kiln(['--zero-stats']);
    const remote = c.buildZlib(dir, `${c.sb.client} ${clientCc}`);
    expect(local.size).toBeGreaterThan(10);
    expect(differing(local, remote)).toEqual([]);
    const s = c.stats();
    expect(s.distErrors).toEqual({});
    expect(s.distLocal).toEqual({});
    expect(sum(s.distCompiles)).toBe(local.size);
    // Really aarch64 code, not the host's.
    expect(remote.get('adler32.o')!.readUInt16LE(18)).toBe(183);
  });

  it('an archive lacking archive_compiler_executable: every compile local, counted, same objects', () => {
    c.useClientConfig(
      `force_remote_build = true\n${entry({ archive_compiler_executable: '/usr/bin/not-there-gcc' })}`,
    );
    c.sb.kiln(['--zero-stats']);
    const remote = c.buildZlib(dir, `${c.sb.client} ${clientCc}`);
    expect(differing(local, remote)).toEqual([]);
    const s = c.stats();
    expect(sum(s.distCompiles)).toBe(0);
    expect(s.distLocal).toEqual({ 'toolchain cannot be packaged': local.size });
    expect(c.sb.log()).toMatch(/has no archive_compiler_executable \/usr\/bin\/not-there-gcc/);
  });

  it('no_dist keeps the compiler local, counted as such', () => {
    c.useClientConfig(
      `force_remote_build = true\n[[dist.toolchains]]\ntype = "no_dist"\ncompiler_executable = "${clientCc}"\n`,
    );
    c.sb.kiln(['--zero-stats']);
    const remote = c.buildZlib(dir, `${c.sb.client} ${clientCc}`);
    expect(differing(local, remote)).toEqual([]);
    expect(c.stats().distLocal).toEqual({ 'no_dist toolchain': local.size });
  });

  it('a missing archive stops the daemon at start with a message naming it; compiles go local', () => {
    const missing = path.join(c.sb.dir, 'archives', 'missing.tar.gz');
    c.useClientConfig(entry({ archive: missing }));
    const r = c.sb.kiln(['--start-server']);
    expect(r.status).not.toBe(0);
    expect(`${r.stdout}${r.stderr}`).toContain(`archive ${missing} cannot be read (ENOENT)`);
    // A build meanwhile says so and compiles locally: never broken, never hung.
    fs.rmSync(path.join(dir, 'adler32.o'), { force: true });
    const cc = c.sb.run(
      [c.sb.client, clientCc, '-O2', '-g', '-D_LARGEFILE64_SOURCE=1', '-c', 'adler32.c', '-o', 'adler32.o'],
      {
        cwd: dir,
      },
    );
    expect(cc.status, cc.stderr).toBe(0);
    expect(cc.stderr).toContain('the daemon could not start');
    expect(cc.stderr).toContain(`archive ${missing} cannot be read`);
    expect(fs.readFileSync(path.join(dir, 'adler32.o')).equals(local.get('adler32.o')!)).toBe(true);
  });
});
