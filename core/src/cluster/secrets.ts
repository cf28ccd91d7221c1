/**
 * Secrets (the scheduler's key, client and worker tokens) come from the config file, a file it
 * names, or an environment variable; never from the command line, where `ps` shows them to every
 * user of the machine and shells keep them in their history.
 */
import fs from 'node:fs';
import path from 'node:path';
import { KILN_ERR_AUTH_SECRET, KILN_ERR_CONFIG_INVALID } from '../errors.js';

export interface SecretSource {
  /** The config key that holds it inline, e.g. "worker_auth.secret_key". */
  readonly key: string;
  readonly inline: string | undefined;
  /** The path of a file holding it (relative to the config file's directory). */
  readonly file: string | undefined;
  /** The environment variable that holds it; wins over the config. */
  readonly envName: string;
  readonly env: NodeJS.ProcessEnv;
  /** The config file, for messages and relative paths. */
  readonly where: string;
}

/** Resolves `file` against the directory of the config file `where`. */
export function relativeTo(where: string, file: string): string {
  return path.resolve(path.dirname(path.resolve(where)), file);
}

/** Reads a secret file; the first line, whitespace trimmed. */
export function readSecretFile(file: string, what: string): string {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw KILN_ERR_AUTH_SECRET(
      `${what} from ${file}`,
      (err as NodeJS.ErrnoException).code ?? (err as Error).message,
    );
  }
  const secret = text.split('\n')[0]!.trim();
  if (!secret) throw KILN_ERR_AUTH_SECRET(`${what} from ${file}`, 'the file is empty');
  return secret;
}

/** The secret, or undefined when none of the three is given; two of them at once is an error. */
export function secretFrom(s: SecretSource): string | undefined {
  const fromEnv = s.env[s.envName];
  if (fromEnv) return fromEnv.trim();
  if (s.inline !== undefined && s.file !== undefined)
    throw KILN_ERR_CONFIG_INVALID(s.key, s.where, `either ${s.key} or ${s.key}_file, not both`);
  if (s.file !== undefined) return readSecretFile(relativeTo(s.where, s.file), s.key);
  return s.inline;
}

/**
 * A token sent as `Authorization: Bearer <token>` cannot hold whitespace (RFC 6750): one with a
 * space would be accepted here and then refused for every request. Refused at config load instead.
 */
export function checkBearerToken(key: string, token: string, where: string): void {
  if (/\s/.test(token))
    throw KILN_ERR_CONFIG_INVALID(
      key,
      where,
      'a token without spaces or other whitespace (it travels in an HTTP header, which cuts it at the first space); make one with `openssl rand -hex 32`',
    );
}
