/**
 * The path_override resolver against the resolver conformance kit with a real cross toolchain:
 * a Windows client path mapped to an archive of Debian's aarch64-linux-gnu-gcc (packed by kiln).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { resolverConformance } from '@kiln/plugins/conformance';
import { afterAll, describe } from 'vitest';
import { PathOverrideResolver } from '../src/path-override-resolver.js';

const CROSS = '/usr/bin/aarch64-linux-gnu-gcc';
const KILN = fileURLToPath(new URL('../../core/dist/cli/kiln.js', import.meta.url));
const hasCross = spawnSync(CROSS, ['--version'], { stdio: 'ignore' }).status === 0;
if (!hasCross && process.env.CI === 'true')
  throw new Error(`${CROSS} is required under CI=true (apt-get install gcc-aarch64-linux-gnu; see .ci/run)`);

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-path-override-kit-'));
const archive = path.join(tmp, 'aarch64-cross.tar.gz');
const CLIENT = 'C:\\tools\\arm64\\bin\\aarch64-linux-gnu-gcc.exe';

describe.skipIf(!hasCross)('path_override resolver', () => {
  resolverConformance({
    name: 'path_override',
    create: () => {
      if (!fs.existsSync(archive))
        execFileSync(process.execPath, [KILN, '--package-toolchain', CROSS, archive]);
      return new PathOverrideResolver({
        toolchains: [
          {
            type: 'path_override',
            compiler_executable: CLIENT,
            archive,
            archive_compiler_executable: CROSS,
            host_triple: 'x86_64-unknown-linux-gnu',
          },
        ],
      });
    },
    compiler: CLIENT,
  });
});

afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
