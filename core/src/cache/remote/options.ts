/** Reading a backend's own keys from a `[[cache.remote]]` table: what several backends share. */
import { KILN_ERR_CONFIG_INVALID } from '../../errors.js';

type Table = Readonly<Record<string, unknown>>;

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** A non-empty string, or undefined when the key is absent. */
export function optString(table: Table, key: string, where: string, expected: string): string | undefined {
  const v = table[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || v.length === 0) throw KILN_ERR_CONFIG_INVALID(key, where, expected);
  return v;
}

/** true or false (also "true"/"1"/"false"/"0" from KILN_REMOTE_STORAGE); false when absent. */
export function optBool(table: Table, key: string, where: string): boolean {
  const v = table[key];
  if (v === undefined || v === false || v === 'false' || v === '0') return false;
  if (v === true || v === 'true' || v === '1') return true;
  throw KILN_ERR_CONFIG_INVALID(key, where, 'true or false');
}

/** The name of an environment variable (a secret's place, never the secret). */
export function optEnvName(table: Table, key: string, where: string): string | undefined {
  const v = optString(table, key, where, 'the name of an environment variable');
  if (v !== undefined && !ENV_NAME.test(v)) {
    throw KILN_ERR_CONFIG_INVALID(key, where, 'the name of an environment variable (letters, digits, _)');
  }
  return v;
}

/** The URL without its user and password: how logs and `--show-stats` name a tier. */
export function withoutCredentials(raw: string, invalid: string): string {
  try {
    const u = new URL(raw);
    u.username = '';
    u.password = '';
    return u.toString();
  } catch {
    return invalid;
  }
}
