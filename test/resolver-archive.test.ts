/**
 * The built-in archive resolver (gcc and clang packed by kiln itself) against the resolver
 * conformance kit, with the real gcc of this host.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { resolverConformance } from '@kiln/plugins/conformance';
import { afterAll, beforeAll, describe } from 'vitest';
import { ArchiveResolver } from '../core/dist/toolchain/archive-resolver.js';
import { have } from './helpers/prereq.js';

let tmp = '';
const hasGcc = have('gcc');
const gcc = hasGcc ? execFileSync('sh', ['-c', 'command -v gcc'], { encoding: 'utf8' }).trim() : '';

describe.skipIf(!hasGcc)('archive resolver', () => {
  beforeAll(async () => {
    tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'kiln-resolver-archive-'));
  });
  afterAll(async () => {
    if (tmp) await fs.rm(tmp, { recursive: true, force: true });
  });

  resolverConformance({
    name: 'archive',
    create: () => new ArchiveResolver({ tmpDir: tmp }),
    compiler: gcc,
  });
});
