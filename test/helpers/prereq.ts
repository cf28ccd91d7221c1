import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

/**
 * Whether a tool the test needs is installed. Under CI=true a missing tool is a failure, never a
 * silent skip: CI installs everything the suite needs (.ci/run).
 */
export function have(tool: string): boolean {
  const found = spawnSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' }).status === 0;
  if (!found && process.env.CI === 'true') {
    throw new Error(`${tool} is required under CI=true but is not installed (see .ci/run)`);
  }
  return found;
}

/**
 * The path of an npm package's bin script (a devDependency of @kiln/test, such as a test server),
 * or undefined when the package is not installed; under CI=true a missing package is a failure.
 */
export function packageBin(pkg: string, bin: string): string | undefined {
  const require = createRequire(import.meta.url);
  try {
    const manifest = require.resolve(`${pkg}/package.json`);
    const bins =
      (JSON.parse(fs.readFileSync(manifest, 'utf8')) as { bin?: Record<string, string> }).bin ?? {};
    if (bins[bin]) return path.join(path.dirname(manifest), bins[bin]);
  } catch {
    // not installed: below
  }
  if (process.env.CI === 'true') {
    throw new Error(
      `the npm package ${pkg} (bin ${bin}) is required under CI=true but is not installed (npm ci)`,
    );
  }
  return undefined;
}
