/**
 * The icecc resolver against the resolver conformance kit with the real icecc-create-env packing
 * this host's gcc.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { hostTriple } from '@kiln/plugins';
import { resolverConformance } from '@kiln/plugins/conformance';
import { afterAll, describe } from 'vitest';
import { IceccResolver } from '../src/icecc-resolver.js';

const found = (tool: string) =>
  spawnSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' }).stdout.trim();
const createEnv = found('icecc-create-env');
const gcc = found('gcc');
if ((!createEnv || !gcc) && process.env.CI === 'true')
  throw new Error(
    'icecc-create-env and gcc are required under CI=true (apt-get install icecc gcc; see .ci/run)',
  );

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-icecc-kit-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe.skipIf(!createEnv || !gcc)('icecc resolver', () => {
  resolverConformance({
    name: 'icecc',
    create: () =>
      new IceccResolver({
        config: { create_env: createEnv, create_timeout: 300 },
        workDir: tmp,
        hostTriple: hostTriple(),
      }),
    compiler: gcc,
  });
});
