#!/usr/bin/env node
/** `kiln-dist`: the scheduler, the worker and the auth helpers. */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { generateHs256Key, secretKeyFrom, WORKER_TOKEN_DAYS, workerToken } from '../cluster/auth.js';
import { serverLogStream, stderrIsJournal, stderrLine } from '../cluster/server-log.js';
import { KILN_ERR_USAGE, KilnError } from '../errors.js';
import type { Logger } from '../log.js';
import { exitWithLauncher, relaunchWithV8Flags } from './v8-relaunch.js';

const USAGE = `kiln-dist — kiln's distributed compilation servers

Usage:
  kiln-dist scheduler --config scheduler.toml
  kiln-dist worker --config worker.toml
  kiln-dist tls fingerprint --config scheduler.toml
      the SHA-256 of the certificate the scheduler serves (made now if it has none yet),
      for scheduler_cert_sha256 in worker.toml and the client's [dist]
  kiln-dist auth generate-jwt-hs256-key [--out FILE]
  kiln-dist auth generate-jwt-hs256-worker-token --worker ID [--days N] [--out FILE]
      (--config scheduler.toml | --secret-key-file FILE | KILN_DIST_SECRET_KEY in the environment)
  kiln-dist auth rotate-worker-token --worker ID --out FILE [--days N] (--config … as above)
      replaces the token in FILE; a worker whose token_file it is uses it from its next heartbeat
  kiln-dist migrate-config FILE
      prints an sccache-dist scheduler.conf or server.conf, or an sccache client config, in
      kiln's names (kiln also reads those names as they are; this shows what it reads)

sccache-dist's \`auth generate-jwt-hs256-server-token --server ADDR\` works too: the worker's id is
then its address, as an sccache-dist server is named. Worker tokens expire after ${WORKER_TOKEN_DAYS} days unless --days says otherwise. Changing the
scheduler's secret key revokes every worker token at once. Secrets are never taken from the
command line (every user of the machine sees it in ps): use files or the environment.

See README.md ("Distributed compilation") for the config files.
`;

/** A usage error that points at kiln-dist's own help, not kiln's. */
const usage = (detail: string) => KILN_ERR_USAGE(detail, 'kiln-dist');

const AUTH_USAGE = `kiln-dist auth — secrets for the scheduler and its workers

Usage:
  kiln-dist auth generate-jwt-hs256-key [--out FILE]
      a new secret key for the scheduler's [worker_auth] secret_key_file
  kiln-dist auth generate-jwt-hs256-worker-token --worker ID [--days N] [--out FILE]
      a token for worker ID, for its [scheduler_auth] token_file
  kiln-dist auth rotate-worker-token --worker ID --out FILE [--days N]
      replaces the token in FILE; the worker uses it from its next heartbeat
  kiln-dist auth generate-jwt-hs256-server-token --server ADDR [--days N] [--out FILE]
      sccache-dist's name: a worker token for the worker whose id is ADDR (its public_addr)

The worker-token commands need the scheduler's secret key: --config scheduler.toml,
--secret-key-file FILE, or KILN_DIST_SECRET_KEY in the environment. Tokens expire after
${WORKER_TOKEN_DAYS} days unless --days says otherwise.
`;

const TLS_USAGE = `kiln-dist tls — the scheduler's certificate

Usage:
  kiln-dist tls fingerprint --config scheduler.toml
      the SHA-256 of the certificate the scheduler serves (made now if it has none yet),
      for scheduler_cert_sha256 in worker.toml and the client's [dist]
`;

const HELP_FLAGS = ['--help', '-h', 'help'];

/** Flags that would put a secret on the command line. */
const SECRET_FLAGS = ['--secret-key', '--token', '--key'];

/** `name` when it looks like a command word; anything else may be a secret typed in the wrong place. */
const shown = (name: string) => (/^-{0,2}[a-z][a-z0-9-]{0,39}$/.test(name) ? `"${name}"` : '(not shown)');

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
  if (v === undefined || v.startsWith('--')) throw usage(`${name} needs a value`);
  return v;
}

/** Under systemd's journal, stderr lines carry sd-daemon `<N>` priorities (server-log.ts). */
const journal = stderrIsJournal();
const stderrLog: Logger = {
  error: (m) => stderrLine(3, `kiln-dist: ${m}`, journal),
  warn: (m) => stderrLine(4, `kiln-dist: ${m}`, journal),
  info: (m) => stderrLine(6, `kiln-dist: ${m}`, journal),
  debug: () => {},
};

/**
 * SIGHUP reopens `log_file` (logrotate moves it, then signals). Installed before anything slow:
 * Node's default for SIGHUP is to exit.
 */
function onHangup(reopen: () => void): void {
  process.on('SIGHUP', reopen);
}

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
  const [{ loadSchedulerConfig }, { parseAddr, checkLogFile }, { createScheduler }, { listenOn }] =
    await Promise.all([
      import('../cluster/scheduler/scheduler-config.js'),
      import('../cluster/config-file.js'),
      import('../cluster/scheduler/scheduler-app.js'),
      import('../cluster/http-server.js'),
    ]);
  const config = loadSchedulerConfig(file);
  for (const note of config.migrated) stderrLog.info(`${file}: sccache-dist's ${note}`);
  checkLogFile(config.log_file, file);
  const log = serverLogStream(config.log_file);
  onHangup(() => log.reopen());
  const { host, port } = parseAddr(config.public_addr, file);
  const tls = await schedulerTls(config, host);
  if (!tls)
    stderrLog.warn('insecure = true: serving plain HTTP; tokens and job data cross the network readable');
  if (!config.worker_auth.check_worker_ip)
    stderrLog.info(
      'worker_auth.check_worker_ip is off: a worker token is accepted from any address (turn it on unless workers sit behind NAT)',
    );
  const { app } = createScheduler({
    config,
    version: version(),
    logger: true,
    ...(log.stream ? { logStream: log.stream } : {}),
    ...(tls ? { tls } : {}),
  });
  const address = (await listenOn(app, 'scheduler', host, port)).bound;
  // Signals first: whoever reads the line below may stop the server at once.
  onSignals(() => app.close());
  const cert = tls ? ` (certificate SHA-256 ${tls.fingerprint}, ${tls.source})` : '';
  stderrLog.info(`scheduler listening on ${address}${cert}`);
  return -1;
}

type SchedulerConfig = import('../cluster/scheduler/scheduler-config.js').SchedulerConfig;

/** The scheduler's certificate; undefined when it serves plain HTTP (insecure, no [tls]). */
async function schedulerTls(config: SchedulerConfig, host: string) {
  if (config.insecure && !config.tls) return undefined;
  const { loadServerTls, certificateHosts } = await import('../cluster/tls/server-tls.js');
  return loadServerTls(config.tls, config.state_dir, 'kiln scheduler', certificateHosts(host));
}

/** The scheduler's secret key for minting worker tokens: a file, the environment, or its config. */
async function secretKey(args: readonly string[], command: string): Promise<string> {
  const keyFile = flag(args, '--secret-key-file');
  if (keyFile) {
    const { readSecretFile } = await import('../cluster/secrets.js');
    return readSecretFile(keyFile, 'the secret key');
  }
  const fromEnv = process.env.KILN_DIST_SECRET_KEY?.trim();
  if (fromEnv) return fromEnv;
  const configFile = flag(args, '--config');
  if (configFile) {
    const { loadSchedulerConfig } = await import('../cluster/scheduler/scheduler-config.js');
    return loadSchedulerConfig(configFile).worker_auth.secret_key;
  }
  throw usage(`${command} needs --config scheduler.toml, --secret-key-file FILE or KILN_DIST_SECRET_KEY`);
}

function days(args: readonly string[]): number {
  const text = flag(args, '--days');
  if (text === undefined) return WORKER_TOKEN_DAYS;
  const n = Number(text);
  if (!(n > 0 && n <= 3650)) throw usage('--days needs a number of days from 1 to 3650');
  return n;
}

/**
 * Writes a secret to `file`, readable by its owner only. A new secret never overwrites a file
 * (that would be a rotation); a rotation replaces it in one rename, so a reader sees old or new.
 */
function writeSecret(file: string, secret: string, replace: boolean): void {
  if (!replace) {
    try {
      fs.writeFileSync(file, `${secret}\n`, { mode: 0o600, flag: 'wx' });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST')
        throw usage(`${file} exists: remove it first, or use kiln-dist auth rotate-worker-token`);
      throw err;
    }
    return;
  }
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, `${secret}\n`, { mode: 0o600, flag: 'wx' });
  fs.renameSync(tmp, file);
}

function output(args: readonly string[], secret: string, replace = false): void {
  const out = flag(args, '--out');
  if (out) writeSecret(out, secret, replace);
  else console.log(secret);
}

async function main(args: string[]): Promise<number> {
  const [cmd, sub] = args;
  const secretFlag = args.find((a) => SECRET_FLAGS.includes(a.split('=')[0]!));
  if (secretFlag)
    throw usage(
      `${secretFlag.split('=')[0]}: secrets are not taken from the command line (ps shows them to every user); use --secret-key-file FILE, the environment or the config file`,
    );
  if (!cmd || cmd === '--help' || cmd === '-h') {
    process.stdout.write(USAGE);
    return cmd ? 0 : 2;
  }
  if ((cmd === 'auth' || cmd === 'tls') && (sub === undefined || HELP_FLAGS.includes(sub))) {
    process.stdout.write(cmd === 'auth' ? AUTH_USAGE : TLS_USAGE);
    return sub ? 0 : 2;
  }
  if (cmd === 'help') {
    process.stdout.write(USAGE);
    return 0;
  }
  if (cmd === '--version') {
    console.log(version());
    return 0;
  }
  if (cmd === 'scheduler') {
    const file = flag(args, '--config');
    if (!file) throw usage('kiln-dist scheduler needs --config FILE');
    return runScheduler(file);
  }
  if (cmd === 'worker') {
    const file = flag(args, '--config');
    if (!file) throw usage('kiln-dist worker needs --config FILE');
    // Loaded here so `auth` and `scheduler` never pay for tsyringe and the plugins.
    const { loadWorkerConfig } = await import('../cluster/worker/worker-config.js');
    const config = loadWorkerConfig(file);
    for (const note of config.migrated ?? []) stderrLog.info(`${file}: sccache-dist's ${note}`);
    const { startWorker } = await import('../cluster/worker/worker-main.js');
    const log = serverLogStream(config.log_file);
    onHangup(() => log.reopen());
    const running = await startWorker(
      config,
      path.dirname(path.resolve(file)),
      version(),
      stderrLog,
      log.stream,
    );
    onSignals(() => running.close());
    const advertised =
      running.url === running.address ? '' : ` (advertised to the scheduler as ${running.url})`;
    stderrLog.info(`worker ${config.id} listening on ${running.address}${advertised}`);
    return -1;
  }
  if (cmd === 'tls' && sub === 'fingerprint') {
    const file = flag(args, '--config');
    if (!file) throw usage('kiln-dist tls fingerprint needs --config scheduler.toml');
    const [{ loadSchedulerConfig }, { parseAddr }] = await Promise.all([
      import('../cluster/scheduler/scheduler-config.js'),
      import('../cluster/config-file.js'),
    ]);
    const config = loadSchedulerConfig(file);
    const tls = await schedulerTls(config, parseAddr(config.public_addr, file).host);
    if (!tls) throw usage(`${file} says insecure = true and has no [tls]: the scheduler serves plain HTTP`);
    console.log(tls.fingerprint);
    return 0;
  }
  if (cmd === 'auth' && sub === 'generate-jwt-hs256-key') {
    output(args, generateHs256Key());
    return 0;
  }
  if (cmd === 'migrate-config') {
    if (!sub || sub.startsWith('-')) throw usage('migrate-config needs the config FILE');
    const { migrateConfig } = await import('./migrate-config.js');
    process.stdout.write(migrateConfig(sub));
    return 0;
  }
  if (
    cmd === 'auth' &&
    (sub === 'generate-jwt-hs256-worker-token' ||
      sub === 'rotate-worker-token' ||
      sub === 'generate-jwt-hs256-server-token')
  ) {
    // sccache-dist names a server by its address: --server ADDR is the worker id ADDR.
    const worker = flag(args, sub === 'generate-jwt-hs256-server-token' ? '--server' : '--worker');
    if (!worker)
      throw usage(
        `${sub} needs ${sub === 'generate-jwt-hs256-server-token' ? '--server ADDR' : '--worker ID'}`,
      );
    const rotate = sub === 'rotate-worker-token';
    if (rotate && !flag(args, '--out'))
      throw usage('rotate-worker-token needs --out FILE (the token_file of the worker)');
    const token = await workerToken(secretKeyFrom(await secretKey(args, sub)), worker, days(args));
    output(args, token, rotate);
    return 0;
  }
  if (cmd === 'auth' || cmd === 'tls')
    throw KILN_ERR_USAGE(`unknown ${cmd} command ${shown(sub ?? '')}`, `kiln-dist ${cmd}`);
  throw usage(`unknown command ${shown(cmd)}`);
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exitCode = code;
  },
  (err: unknown) => {
    if (err instanceof KilnError) stderrLog.error(err.message);
    else stderrLog.error(`internal error: ${(err as Error).stack}`);
    process.exitCode = err instanceof KilnError && err.statusCode === 400 ? 2 : 1;
  },
);
