/**
 * What several remote backends share: reading their keys from a `[[cache.remote]]` table, a
 * bucket-style URL, naming a tier without credentials, a request cut short by its signal.
 */
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

/**
 * A bucket-style URL (`s3://BUCKET/PREFIX`, `azure://CONTAINER/PREFIX`): its host as the name and
 * its path as a prefix without empty parts. Refuses any other scheme, credentials, a port, a
 * query or a fragment (`expected` says what to write instead).
 */
export function bucketUrl(
  url: string,
  scheme: string,
  where: string,
  expected: string,
): { readonly name: string; readonly prefix: string } {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw KILN_ERR_CONFIG_INVALID('url', where, expected);
  }
  if (u.protocol !== scheme || u.username || u.password || u.port || u.search || u.hash) {
    throw KILN_ERR_CONFIG_INVALID('url', where, expected);
  }
  return { name: u.hostname, prefix: decodeURIComponent(u.pathname).split('/').filter(Boolean).join('/') };
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

/** `work`, or the signal's reason when it aborts first (then `onAbort` runs): for backends whose
 * client takes no signal of its own. */
export function abortable<T>(work: Promise<T>, signal: AbortSignal, onAbort: () => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const aborted = () => {
      onAbort();
      reject(signal.reason);
    };
    if (signal.aborted) return aborted();
    signal.addEventListener('abort', aborted, { once: true });
    work.then(
      (v) => {
        signal.removeEventListener('abort', aborted);
        resolve(v);
      },
      (err) => {
        signal.removeEventListener('abort', aborted);
        reject(err);
      },
    );
  });
}
