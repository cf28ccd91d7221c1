/**
 * The bash completion in packaging/completion/kiln.bash, run in a real bash: what it offers, and
 * that it offers every option `kiln --help` and every command `kiln-dist --help` lists (a new
 * option without completion fails here).
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { KILN_DIST } from './helpers/cluster.js';
import { NODE_CLIENT, tmpDir } from './helpers/kiln.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const SCRIPT = path.join(root, 'packaging', 'completion', 'kiln.bash');
const dir = tmpDir('kiln-completion-');
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** What the completion offers for the command line `words`, the last being the word completed. */
function complete(words: readonly string[]): string[] {
  const fn = words[0] === 'kiln' ? '_kiln' : '_kiln_dist';
  const quoted = words.map((w) => `'${w.replace(/'/g, "'\\''")}'`).join(' ');
  const r = spawnSync(
    'bash',
    [
      '--norc',
      '-c',
      `source '${SCRIPT}'; COMP_WORDS=(${quoted}); COMP_CWORD=${words.length - 1}; ${fn}; printf '%s\\n' "\${COMPREPLY[@]}"`,
    ],
    { encoding: 'utf8', cwd: dir },
  );
  expect(r.status, r.stderr).toBe(0);
  return r.stdout.split('\n').filter(Boolean).sort();
}

const help = (argv: string[]) => spawnSync(process.execPath, argv, { encoding: 'utf8' }).stdout;

describe('bash completion', () => {
  it('completes kiln options, their values, and files after a compiler', () => {
    expect(complete(['kiln', '--show-c'])).toEqual(['--show-config']);
    expect(complete(['kiln', '--stats-format', ''])).toEqual(['json', 'text']);
    expect(complete(['kiln', '-C', '--t'])).toEqual(['--toolchains']);
    fs.writeFileSync(path.join(dir, 'main.c'), '');
    fs.writeFileSync(path.join(dir, 'other.h'), '');
    expect(complete(['kiln', 'gcc', '-c', 'ma'])).toEqual(['main.c']);
  });

  it('offers every option kiln --help lists', () => {
    const text = help([NODE_CLIENT, '--help']);
    const listed = new Set(
      [...text.split('Commands:')[1]!.matchAll(/^\s+(-\w|--[a-z-]+)(?:, (--[a-z-]+))?/gm)].flatMap((m) =>
        [m[1], m[2]].filter((x): x is string => x !== undefined),
      ),
    );
    expect(listed.size).toBeGreaterThan(15);
    const offered = new Set(complete(['kiln', '-']));
    expect([...listed].filter((o) => !offered.has(o))).toEqual([]);
  });

  it('completes kiln-dist commands, auth subcommands and their flags; each command kiln-dist --help lists', () => {
    const text = help([KILN_DIST, '--help']);
    const commands = new Set([...text.matchAll(/^ {2}kiln-dist ([a-z-]+)/gm)].map((m) => m[1]!));
    const subs = new Set([...text.matchAll(/^ {2}kiln-dist auth ([a-z0-9-]+)/gm)].map((m) => m[1]!));
    const top = new Set(complete(['kiln-dist', '']));
    expect([...commands].filter((c) => !top.has(c))).toEqual([]);
    const auth = new Set(complete(['kiln-dist', 'auth', '']));
    expect(subs.size).toBeGreaterThanOrEqual(3);
    expect([...subs].filter((s) => !auth.has(s))).toEqual([]);
    expect(complete(['kiln-dist', 'auth', 'generate-jwt-hs256-server-token', '--s'])).toEqual([
      '--secret-key-file',
      '--server',
    ]);
    fs.writeFileSync(path.join(dir, 'worker.toml'), '');
    expect(complete(['kiln-dist', 'worker', '--config', 'wor'])).toEqual(['worker.toml']);
  });
});
