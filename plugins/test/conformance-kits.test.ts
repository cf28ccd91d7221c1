/**
 * The conformance kits catch what they promise to: a deliberately naive resolver run through the
 * resolver kit in a child vitest passes only the cases it honestly passes.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const repo = path.resolve(import.meta.dirname, '..', '..');
const kitDir = path.join(import.meta.dirname, 'fixtures', 'kit');

/** Runs one fixture suite; answers each test's full name → passed / failed / skipped. */
function runKit(file: string): Map<string, string> {
  const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-kit-')), 'report.json');
  const vitest = path.join(repo, 'node_modules', 'vitest', 'vitest.mjs');
  const r = spawnSync(
    process.execPath,
    [
      vitest,
      'run',
      '--config',
      path.join(kitDir, 'vitest.config.ts'),
      '--reporter=json',
      `--outputFile=${out}`,
      file,
    ],
    { cwd: repo, encoding: 'utf8', timeout: 120_000 },
  );
  if (!fs.existsSync(out)) throw new Error(`the child vitest wrote no report: ${r.stderr}`);
  const report = JSON.parse(fs.readFileSync(out, 'utf8')) as {
    testResults: { assertionResults: { title: string; status: string }[] }[];
  };
  fs.rmSync(path.dirname(out), { recursive: true, force: true });
  return new Map(report.testResults.flatMap((f) => f.assertionResults.map((a) => [a.title, a.status])));
}

describe('resolverConformance', () => {
  it('fails a resolver that trusts its archives, on every refusal', { timeout: 150_000 }, () => {
    const results = runKit('naive-resolver.kit.ts');
    const failed = [...results].filter(([, s]) => s === 'failed').map(([t]) => t);
    const passed = [...results].filter(([, s]) => s === 'passed').map(([t]) => t);
    expect(passed.sort()).toEqual([
      'has a stable, non-empty kind',
      'materialises its own archive into a root holding the compiler',
    ]);
    expect(failed).toContain('refuses an archive whose digest is not the spec');
    expect(failed).toContain('refuses a dest that already exists, and leaves it alone');
    for (const what of ['an absolute path', 'a ".." path', 'a symbolic link leaving the root'])
      expect(failed).toContain(`refuses an archive with ${what}, leaving nothing behind`);
    const refusals = [...results.keys()].filter((t) => t.startsWith('refuses'));
    expect(refusals).toHaveLength(9);
    expect(failed.sort()).toEqual(refusals.sort());
  });
});
