/**
 * The rustup resolver against the resolver conformance kit with the rustup toolchain installed on
 * this machine (`rustup toolchain list`, `rustup which`): the real rustc is named by version, and
 * resolved into a root by the real rustup; another commit of the same release is refused.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { hostTriple, versionDigest } from '@kiln/plugins';
import { resolverConformance } from '@kiln/plugins/conformance';
import { afterAll, describe } from 'vitest';
import { RustupResolver } from '../src/rustup-resolver.js';

const found = (tool: string) =>
  spawnSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' }).stdout.trim();
const rustup = found('rustup');
/** The real rustc of the default toolchain (never the proxy). */
const rustc = rustup ? spawnSync(rustup, ['which', 'rustc'], { encoding: 'utf8' }).stdout.trim() : '';
if (!rustc && process.env.CI === 'true')
  throw new Error('rustup and a toolchain are required under CI=true (see .ci/run)');

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-rustup-kit-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe.skipIf(!rustc)('rustup resolver', () => {
  resolverConformance({
    name: 'rustup',
    create: () =>
      new RustupResolver({
        config: { rustup, install: false, install_timeout: 60, hosts: [hostTriple()] },
        hostTriple: hostTriple(),
      }),
    compiler: rustc,
    byVersion: {
      unavailable: (spec) => {
        const version = { ...spec.version!, commit: '0'.repeat(40) };
        return { ...spec, version, digest: versionDigest('rustup', version) };
      },
    },
  });
});
