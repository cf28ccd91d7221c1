import { spawnSync } from 'node:child_process';

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
