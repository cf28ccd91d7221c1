#!/usr/bin/env node
/**
 * `kiln`: wraps a compiler call (`kiln gcc -c a.c`, or a masquerade link named `gcc`) or runs a
 * management command. Compiler calls import only the thin client; commands load the rest lazily.
 */
import path from 'node:path';
import { runCompile } from '../client/thin-client.js';

const argv = process.argv.slice(2);
const self = process.argv[1] ?? 'kiln';
const invokedAs = path.basename(self).replace(/\.js$/, '');

async function main(): Promise<number> {
  if (!invokedAs.startsWith('kiln')) return runCompile([invokedAs, ...argv], self);
  const first = argv[0];
  if (first === undefined || (first.startsWith('-') && first !== '-')) {
    const { runCommand } = await import('./commands.js');
    return runCommand(argv, self);
  }
  return runCompile(argv, self);
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: Error) => {
    process.stderr.write(`kiln: ${err.message}\n`);
    process.exitCode = 1;
  },
);
