/**
 * Every error code kiln reports, in one place (fastify's lib/errors.js style).
 * A code names the area and what went wrong; the message tells the user what to do.
 */
import { createError, KilnError } from '@kiln/plugins/errors';

export { KilnError };

export const KILN_ERR_CONFIG_PARSE = createError(
  'KILN_ERR_CONFIG_PARSE',
  (file: string, detail: string) => `cannot parse config file ${file}: ${detail}`,
);
export const KILN_ERR_CONFIG_UNKNOWN_KEY = createError(
  'KILN_ERR_CONFIG_UNKNOWN_KEY',
  (key: string, where: string, known: readonly string[]) =>
    `unknown config key "${key}" in ${where} (known keys: ${known.join(', ')})`,
);
export const KILN_ERR_CONFIG_INVALID = createError(
  'KILN_ERR_CONFIG_INVALID',
  (key: string, where: string, expected: string) =>
    `invalid value for "${key}" in ${where}: expected ${expected}`,
);
export const KILN_ERR_PROTOCOL = createError(
  'KILN_ERR_PROTOCOL',
  (detail: string) => `malformed message on the kiln socket: ${detail}`,
  400,
);
export const KILN_ERR_DAEMON_UNREACHABLE = createError(
  'KILN_ERR_DAEMON_UNREACHABLE',
  (socket: string, detail: string) => `the kiln daemon at ${socket} cannot be reached: ${detail}`,
);
export const KILN_ERR_STORAGE_CORRUPT = createError(
  'KILN_ERR_STORAGE_CORRUPT',
  (file: string, detail: string) => `corrupt cache entry ${file}: ${detail}`,
);
export const KILN_ERR_USAGE = createError(
  'KILN_ERR_USAGE',
  (detail: string) => `${detail} (see kiln --help)`,
  400,
);

export const ALL_ERROR_CODES = [
  KILN_ERR_CONFIG_PARSE,
  KILN_ERR_CONFIG_UNKNOWN_KEY,
  KILN_ERR_CONFIG_INVALID,
  KILN_ERR_PROTOCOL,
  KILN_ERR_DAEMON_UNREACHABLE,
  KILN_ERR_STORAGE_CORRUPT,
  KILN_ERR_USAGE,
].map((f) => f.code);
