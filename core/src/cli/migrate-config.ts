/**
 * `kiln-dist migrate-config FILE`: an sccache-dist config (scheduler.conf, server.conf) or an
 * sccache client config, printed with kiln's names, each rename as a comment, and then what kiln
 * says of the file as it is (it reads sccache's names itself).
 */
import fs from 'node:fs';
import { parse, stringify } from 'smol-toml';
import { fromSccacheClient, fromSccacheScheduler, fromSccacheWorker } from '../cluster/sccache-names.js';
import { loadSchedulerConfig } from '../cluster/scheduler/scheduler-config.js';
import { loadWorkerConfig } from '../cluster/worker/worker-config.js';
import { loadClientConfig } from '../config.js';
import { KILN_ERR_CONFIG_PARSE, KilnError } from '../errors.js';
import { tomlErrorDetail } from '../util/toml-error.js';

type Kind = 'scheduler' | 'worker' | 'client';

function kindOf(table: Record<string, unknown>): Kind {
  if ('client_auth' in table || 'server_auth' in table || 'worker_auth' in table) return 'scheduler';
  if ('scheduler_url' in table || 'builder' in table || 'scheduler_auth' in table) return 'worker';
  return 'client';
}

export function migrateConfig(file: string): string {
  let table: Record<string, unknown>;
  try {
    table = parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    throw KILN_ERR_CONFIG_PARSE(
      file,
      err instanceof Error && 'line' in err ? tomlErrorDetail(err) : (err as Error).message,
    );
  }
  const kind = kindOf(table);
  const done =
    kind === 'scheduler'
      ? fromSccacheScheduler(table, file)
      : kind === 'worker'
        ? fromSccacheWorker(table, file)
        : fromSccacheClient(table);
  const lines = [`# ${file} as a kiln ${kind === 'client' ? 'client config.toml' : `${kind}.toml`}`];
  if (done.notes.length) lines.push(...done.notes.map((n) => `# sccache-dist's ${n}`));
  else lines.push('# no sccache-dist names found');
  let verdict: string;
  try {
    if (kind === 'scheduler') loadSchedulerConfig(file);
    else if (kind === 'worker') loadWorkerConfig(file);
    else loadClientConfig({ KILN_CONFIG: file });
    verdict = '# kiln reads this file as it is';
  } catch (err) {
    if (!(err instanceof KilnError)) throw err;
    verdict = `# still to fix: ${err.message.replace(/\n/g, '\n#   ')}`;
  }
  return `${lines.join('\n')}\n${verdict}\n\n${stringify(done.table)}\n`;
}
