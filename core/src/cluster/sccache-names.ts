/**
 * sccache-dist's config names, read as kiln's where they mean the same thing, so an sccache-dist
 * user's scheduler.conf, server.conf and client config work as they are. Each rename is a note
 * (logged at start, printed by `kiln-dist migrate-config`); what kiln does differently on purpose
 * (a shared worker token, the pot builder) is an error that says what to write instead.
 */
import { KILN_ERR_CONFIG_INVALID } from '../errors.js';

type Table = Record<string, unknown>;

export interface Translated {
  readonly table: Table;
  /** What was renamed, in words: `[server_auth] read as [worker_auth]`. */
  readonly notes: readonly string[];
}

const isTable = (v: unknown): v is Table => typeof v === 'object' && v !== null && !Array.isArray(v);

const PER_WORKER_TOKENS =
  'kiln gives every worker a token of its own: run `kiln-dist auth generate-jwt-hs256-key --out secret.key`, set [worker_auth] type = "jwt_hs256" and secret_key_file = "secret.key" on the scheduler, then `kiln-dist auth generate-jwt-hs256-worker-token --worker ID --config scheduler.toml` for each worker';

/** scheduler.conf → scheduler.toml. */
export function fromSccacheScheduler(input: Table, where: string): Translated {
  const table = structuredClone(input);
  const notes: string[] = [];
  if (isTable(table.server_auth) && table.worker_auth === undefined) {
    const auth = table.server_auth;
    delete table.server_auth;
    if (auth.type === 'token' || auth.type === 'DANGEROUSLY_INSECURE')
      throw KILN_ERR_CONFIG_INVALID('server_auth.type', where, `"jwt_hs256" (${PER_WORKER_TOKENS})`);
    table.worker_auth = auth;
    notes.push('[server_auth] read as [worker_auth]');
  }
  if (isTable(table.client_auth)) {
    const auth = table.client_auth;
    if (auth.type === 'DANGEROUSLY_INSECURE') {
      auth.type = 'none';
      notes.push('[client_auth] type = "DANGEROUSLY_INSECURE" read as "none"');
    } else if (auth.type === 'jwt_validate') {
      auth.type = 'jwt';
      notes.push('[client_auth] type = "jwt_validate" read as "jwt"');
    }
  }
  return { table, notes };
}

/** server.conf (an sccache-dist build server) → worker.toml. */
export function fromSccacheWorker(input: Table, where: string): Translated {
  const table = structuredClone(input);
  const notes: string[] = [];
  const sccacheStyle = isTable(table.builder) && table.sandbox === undefined;
  if (sccacheStyle && isTable(table.builder)) {
    const builder = table.builder;
    delete table.builder;
    const config: Table = isTable(table.sandbox_config) ? table.sandbox_config : {};
    if (builder.type === 'overlay') {
      table.sandbox = 'bwrap';
      if (builder.build_dir !== undefined) config.work_dir = builder.build_dir;
      if (builder.bwrap_path !== undefined) config.bwrap_path = builder.bwrap_path;
      notes.push(
        '[builder] type = "overlay" read as sandbox = "bwrap" (build_dir → [sandbox_config] work_dir)',
      );
    } else if (builder.type === 'docker') {
      table.sandbox = 'docker';
      notes.push('[builder] type = "docker" read as sandbox = "docker"');
    } else {
      throw KILN_ERR_CONFIG_INVALID(
        'builder.type',
        where,
        '"overlay" (kiln\'s bwrap sandbox) or "docker"; for other sandboxes set sandbox = "<plugin>" (see the README\'s Plugins)',
      );
    }
    for (const key of Object.keys(builder))
      if (!['type', 'build_dir', 'bwrap_path'].includes(key)) config[key] = builder[key];
    if (Object.keys(config).length) table.sandbox_config = config;
  }
  if (isTable(table.scheduler_auth)) {
    const auth = table.scheduler_auth;
    if (auth.type === 'token' || auth.type === 'DANGEROUSLY_INSECURE')
      throw KILN_ERR_CONFIG_INVALID('scheduler_auth.type', where, `"jwt_token" (${PER_WORKER_TOKENS})`);
  }
  // sccache-dist names a server by its address: its tokens are made with --server <public_addr>.
  if (sccacheStyle && table.id === undefined && typeof table.public_addr === 'string') {
    table.id = table.public_addr;
    notes.push(
      `no id: the worker is named by its public_addr "${table.public_addr}", as sccache-dist names a server`,
    );
  }
  return { table, notes };
}

/** sccache's client config → kiln's config.toml: `[cache.disk]` and `[dist] cache_dir`. */
export function fromSccacheClient(input: Table): Translated {
  const table = structuredClone(input);
  const notes: string[] = [];
  if (isTable(table.cache) && isTable(table.cache.disk)) {
    const { dir, size, ...rest } = table.cache.disk;
    if (Object.keys(rest).length === 0) {
      if (dir !== undefined && table.cache_dir === undefined) table.cache_dir = dir;
      if (size !== undefined && table.cache_size === undefined) table.cache_size = size;
      delete table.cache.disk;
      if (Object.keys(table.cache).length === 0) delete table.cache;
      notes.push('[cache.disk] dir and size read as cache_dir and cache_size');
    }
  }
  return { table, notes };
}
