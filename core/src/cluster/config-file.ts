import fs from 'node:fs';
import { ConfigSchemaError, type ObjectSchema, validateConfig } from '@kiln/plugins/config-schema';
import { parse as parseToml } from 'smol-toml';
import {
  KILN_ERR_CONFIG_INVALID,
  KILN_ERR_CONFIG_MISSING,
  KILN_ERR_CONFIG_PARSE,
  KILN_ERR_CONFIG_PROBLEMS,
  KILN_ERR_CONFIG_UNKNOWN_KEY,
  type KilnError,
} from '../errors.js';
import { tomlErrorDetail } from '../util/toml-error.js';
import type { Translated } from './sccache-names.js';

/**
 * Reads a TOML file and validates it against `schema`; errors name the file and the key.
 * `translate` may rename keys first (sccache-dist's names), pushing what it did to `notes`.
 */
export function loadTomlConfig<C>(
  file: string,
  schema: ObjectSchema,
  translate?: (table: Record<string, unknown>, where: string) => Translated,
  notes?: string[],
): C {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw KILN_ERR_CONFIG_PARSE(file, (err as Error).message);
  }
  let table: unknown;
  try {
    table = parseToml(text);
  } catch (err) {
    throw KILN_ERR_CONFIG_PARSE(file, tomlErrorDetail(err));
  }
  if (translate) {
    const done = translate(table as Record<string, unknown>, file);
    table = done.table;
    notes?.push(...done.notes);
  }
  return validateTable<C>(table, schema, file);
}

/** The KilnError for one schema problem, as kiln words it. */
function asKilnError(err: ConfigSchemaError, where: string): KilnError {
  if (err.expected.startsWith('unknown key')) {
    const known = /\(known keys: (.*)\)$/.exec(err.expected)?.[1]?.split(', ') ?? [];
    const near = /did you mean "([^"]+)"/.exec(err.expected)?.[1];
    return KILN_ERR_CONFIG_UNKNOWN_KEY(err.key, where, known, near);
  }
  if (err.want === undefined) return KILN_ERR_CONFIG_MISSING(err.key, where);
  return KILN_ERR_CONFIG_INVALID(err.key, where, err.want);
}

/** Validates `table`; every problem is reported at once (one per line), not one per run. */
export function validateTable<C>(table: unknown, schema: ObjectSchema, where: string): C {
  try {
    return validateConfig<C>(schema, table);
  } catch (err) {
    if (!(err instanceof ConfigSchemaError)) throw err;
    if (err.all.length <= 1) throw asKilnError(err, where);
    throw KILN_ERR_CONFIG_PROBLEMS(
      where,
      err.all.map((e) => asKilnError(e, where).message.replace(` in ${where}`, '')),
    );
  }
}

/** "host:port" → the parts; a bare port means 127.0.0.1. */
export function parseAddr(addr: string, where: string): { host: string; port: number } {
  const m = /^(?:\[?([^\]]*)\]?:)?(\d{1,5})$/.exec(addr);
  const port = m ? Number(m[2]) : Number.NaN;
  if (!m || port > 65535)
    throw KILN_ERR_CONFIG_INVALID('public_addr', where, 'host:port, e.g. 127.0.0.1:10600');
  return { host: m[1] || '127.0.0.1', port };
}

/**
 * Opens `log_file` for appending once before the server starts, so that a file it cannot write
 * is one line that says what to do, not a logger crashing later.
 */
export function checkLogFile(file: string | undefined, where: string): void {
  if (!file) return;
  try {
    fs.appendFileSync(file, '', { mode: 0o640 });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    throw KILN_ERR_CONFIG_INVALID(
      'log_file',
      where,
      `a file this user can append to, in a directory that exists: cannot open ${file} (${code}); create the directory and give it to this user, or leave log_file out to log to stdout`,
    );
  }
}
