#!/usr/bin/env node
/** `kiln-dist`: the scheduler, the worker and the auth helpers. */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { generateHs256Key, secretKeyFrom, workerToken } from '../dist/auth.js';
import { KILN_ERR_USAGE, KilnError } from '../errors.js';
import type { Logger } from '../log.js';
import { exitWithLauncher, relaunchWithV8Flags } from './v8-relaunch.js';

const USAGE = `kiln-dist — kiln's distributed compilation servers

Usage:
  kiln-dist scheduler --config scheduler.toml
  kiln-dist worker --config worker.toml
  kiln-dist auth generate-jwt-hs256-key
  kiln-dist auth generate-jwt-hs256-worker-token --worker ID (--secret-key KEY | --config scheduler.toml)

See README.md ("Distributed compilation") for the config files.
`;

/**
 * Under allocation load V8 grows the young generation to 32 MB (64 MB on Node 24), over a quarter
 * of the scheduler's peak RSS. 4 MB semi-spaces keep the peak under 100 MB with 1,000 workers
 * (bench/scheduler.mjs) and cost no measurable allocations/s: scavenges of a small young
 * generation are short.
 */
const SCHEDULER_V8_FLAGS = ['--max-semi-space-size=4'];

const here = path.dirname(fileURLToPath(import.meta.url));
const version = () =>
  (JSON.parse(fs.readFileSync(path.join(here, '..', '..', 'package.json'), 'utf8')) as { version: string })
    .version;

function flag(args: readonly string[], name: string): string | undefined {
  const i = args.indexOf(name);
  if (i < 0) return undefined;
  const v = args[i + 1];
  if (v === undefined || v.startsWith('--')) throw KILN_ERR_USAGE(`${name} needs a value`);
  return v;
}

const stderrLog: Logger = {
  error: (m) => console.error(`kiln-dist: ${m}`),
  warn: (m) => console.error(`kiln-dist: ${m}`),
  info: (m) => console.error(`kiln-dist: ${m}`),
  debug: () => {},
};

function onSignals(close: () => Promise<void>): void {
  const stop = () => {
    close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

/**
 * Config, fastify and the scheduler are imported only after the relaunch, so that a launcher
 * waiting for its relaunched child (Node 20) stays a bare Node.
 */
async function runScheduler(file: string): Promise<number> {
  const relaunched = await relaunchWithV8Flags(SCHEDULER_V8_FLAGS);
  if (relaunched !== undefined) return relaunched;
  exitWithLauncher();
  const [{ loadSchedulerConfig }, { parseAddr }, { createScheduler }] = await Promise.all([
    import('../dist/scheduler/scheduler-config.js'),
    import('../dist/config-file.js'),
    import('../dist/scheduler/scheduler-app.js'),
  ]);
  const config = loadSchedulerConfig(file);
  const { app } = createScheduler({ config, version: version(), logger: true });
  const { host, port } = parseAddr(config.public_addr, file);
  const address = await app.listen({ host, port });
  // Signals first: whoever reads the line below may stop the server at once.
  onSignals(() => app.close());
  console.error(`kiln-dist: scheduler listening on ${address}`);
  return -1;
}

async function main(args: string[]): Promise<number> {
  const [cmd, sub] = args;
  if (!cmd || cmd === '--help' || cmd === '-h') {
    process.stdout.write(USAGE);
    return cmd ? 0 : 2;
  }
  if (cmd === '--version') {
    console.log(version());
    return 0;
  }
  if (cmd === 'scheduler') {
    const file = flag(args, '--config');
    if (!file) throw KILN_ERR_USAGE('kiln-dist scheduler needs --config FILE');
    return runScheduler(file);
  }
  if (cmd === 'worker') {
    const file = flag(args, '--config');
    if (!file) throw KILN_ERR_USAGE('kiln-dist worker needs --config FILE');
    // Loaded here so `auth` and `scheduler` never pay for tsyringe and the plugins.
    const { loadWorkerConfig } = await import('../dist/worker/worker-config.js');
    const config = loadWorkerConfig(file);
    const { startWorker } = await import('../dist/worker/worker-main.js');
    const running = await startWorker(config, path.dirname(path.resolve(file)), version(), stderrLog);
    onSignals(() => running.close());
    console.error(`kiln-dist: worker ${config.id} listening on ${running.url}`);
    return -1;
  }
  if (cmd === 'auth' && sub === 'generate-jwt-hs256-key') {
    console.log(generateHs256Key());
    return 0;
  }
  if (cmd === 'auth' && sub === 'generate-jwt-hs256-worker-token') {
    const worker = flag(args, '--worker');
    if (!worker) throw KILN_ERR_USAGE('generate-jwt-hs256-worker-token needs --worker ID');
    const keyFlag = flag(args, '--secret-key');
    const configFile = flag(args, '--config');
    const fromConfig = async (f: string) =>
      (await import('../dist/scheduler/scheduler-config.js')).loadSchedulerConfig(f).worker_auth.secret_key;
    const key = keyFlag ?? (configFile ? await fromConfig(configFile) : undefined);
    if (!key)
      throw KILN_ERR_USAGE(
        'generate-jwt-hs256-worker-token needs --secret-key KEY or --config scheduler.toml',
      );
    console.log(await workerToken(secretKeyFrom(key), worker));
    return 0;
  }
  throw KILN_ERR_USAGE(`unknown command: ${args.join(' ')}`);
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exitCode = code;
  },
  (err: unknown) => {
    if (err instanceof KilnError) console.error(`kiln-dist: ${err.message}`);
    else console.error(`kiln-dist: internal error: ${(err as Error).stack}`);
    process.exitCode = err instanceof KilnError && err.statusCode === 400 ? 2 : 1;
  },
);
