/**
 * Every error code kiln reports, in one place (fastify's lib/errors.js style).
 * A code names the area and what went wrong; the message tells the user what to do.
 */
import {
  createError,
  KILN_ERR_TOOLCHAIN_ELF,
  KILN_ERR_TOOLCHAIN_EXTRACT,
  KILN_ERR_TOOLCHAIN_UNSAFE,
  KilnError,
} from '@kiln/plugins/errors';

// Defined by the SDK, where ELF reading and safe extraction live for every resolver to use.
export { KILN_ERR_TOOLCHAIN_ELF, KILN_ERR_TOOLCHAIN_EXTRACT, KILN_ERR_TOOLCHAIN_UNSAFE, KilnError };

export const KILN_ERR_CONFIG_PARSE = createError(
  'KILN_ERR_CONFIG_PARSE',
  (file: string, detail: string) => `cannot parse config file ${file}: ${detail}`,
);
export const KILN_ERR_CONFIG_UNKNOWN_KEY = createError(
  'KILN_ERR_CONFIG_UNKNOWN_KEY',
  (key: string, where: string, known: readonly string[], near?: string) =>
    `unknown config key "${key}" in ${where}${near ? ` (did you mean "${near}"?)` : ''} (known keys: ${known.join(', ')})`,
);
export const KILN_ERR_CONFIG_PROBLEMS = createError(
  'KILN_ERR_CONFIG_PROBLEMS',
  (where: string, problems: readonly string[]) =>
    `${problems.length} problems in ${where}:\n${problems.map((p) => `  - ${p}`).join('\n')}`,
);
export const KILN_ERR_CONFIG_INVALID = createError(
  'KILN_ERR_CONFIG_INVALID',
  (key: string, where: string, expected: string) =>
    `invalid value for "${key}" in ${where}: expected ${expected}`,
);
export const KILN_ERR_CONFIG_MISSING = createError(
  'KILN_ERR_CONFIG_MISSING',
  (key: string, where: string) =>
    `"${key}" is missing from ${where}: it is required (the README's config reference shows an example)`,
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
export const KILN_ERR_DAEMON_START = createError(
  'KILN_ERR_DAEMON_START',
  (detail: string) => `the daemon could not start: ${detail}`,
);
export const KILN_ERR_STORAGE_CORRUPT = createError(
  'KILN_ERR_STORAGE_CORRUPT',
  (file: string, detail: string) => `corrupt cache entry ${file}: ${detail}`,
);
export const KILN_ERR_STORAGE_NO_CONTAINER = createError(
  'KILN_ERR_STORAGE_NO_CONTAINER',
  (what: string, remedy: string) => `${what} does not exist: ${remedy}`,
);
export const KILN_ERR_STORAGE_DENIED = createError(
  'KILN_ERR_STORAGE_DENIED',
  (what: string, detail: string) => `${what} refused the credentials: ${detail}`,
);
export const KILN_ERR_STORAGE_CREDENTIALS = createError(
  'KILN_ERR_STORAGE_CREDENTIALS',
  (what: string, detail: string) => `no credentials for ${what}: ${detail}`,
);
export const KILN_ERR_STORAGE_REMOTE = createError(
  'KILN_ERR_STORAGE_REMOTE',
  (what: string, detail: string) => `${what} failed: ${detail}`,
);
export const KILN_ERR_USAGE = createError(
  'KILN_ERR_USAGE',
  (detail: string, command = 'kiln') => `${detail} (see ${command} --help)`,
  400,
);

export const KILN_ERR_AUTH_INVALID = createError(
  'KILN_ERR_AUTH_INVALID',
  (detail: string) => `authentication is misconfigured: ${detail}`,
);
export const KILN_ERR_AUTH_SECRET = createError(
  'KILN_ERR_AUTH_SECRET',
  (what: string, detail: string) => `cannot read ${what}: ${detail}`,
);
export const KILN_ERR_TLS_CERT = createError(
  'KILN_ERR_TLS_CERT',
  (where: string, detail: string) => `TLS certificate (${where}): ${detail}`,
);
export const KILN_ERR_AUTH_REQUIRED = createError(
  'KILN_ERR_AUTH_REQUIRED',
  (what: string) => `${what}: missing or invalid credentials`,
  401,
);
export const KILN_ERR_AUTH_FORBIDDEN = createError(
  'KILN_ERR_AUTH_FORBIDDEN',
  (detail: string) => `forbidden: ${detail}`,
  403,
);
export const KILN_ERR_DIST_BAD_REQUEST = createError(
  'KILN_ERR_DIST_BAD_REQUEST',
  (detail: string) => `bad request: ${detail}`,
  400,
);
export const KILN_ERR_DIST_NOT_FOUND = createError(
  'KILN_ERR_DIST_NOT_FOUND',
  (what: string) => `${what} not found`,
  404,
);
export const KILN_ERR_DIST_UNSUPPORTED_TYPE = createError(
  'KILN_ERR_DIST_UNSUPPORTED_TYPE',
  (expected: string) => `unsupported content type: this request needs ${expected}`,
  415,
);
export const KILN_ERR_DIST_TOO_LARGE = createError(
  'KILN_ERR_DIST_TOO_LARGE',
  (what: string, limit: number) => `${what} body is over this server's limit of ${limit} bytes`,
  413,
);
export const KILN_ERR_DIST_RATE_LIMITED = createError(
  'KILN_ERR_DIST_RATE_LIMITED',
  (what: string, perMinute: number) => `too many ${what}: at most ${perMinute} a minute`,
  429,
);
export const KILN_ERR_DIST_TOOLCHAIN_DIGEST = createError(
  'KILN_ERR_DIST_TOOLCHAIN_DIGEST',
  (claimed: string, actual: string) =>
    `toolchain archive digest mismatch: claimed ${claimed}, content is ${actual}`,
  400,
);
export const KILN_ERR_DIST_TOOLCHAIN_MISSING = createError(
  'KILN_ERR_DIST_TOOLCHAIN_MISSING',
  (digest: string) => `toolchain ${digest} is not on this worker: upload it first`,
  409,
);
export const KILN_ERR_DIST_TOOLCHAIN_UNAVAILABLE = createError(
  'KILN_ERR_DIST_TOOLCHAIN_UNAVAILABLE',
  (detail: string) => `this worker cannot provide the toolchain: ${detail}`,
  422,
);
export const KILN_ERR_DIST_UNAVAILABLE = createError(
  'KILN_ERR_DIST_UNAVAILABLE',
  (detail: string) => `distributed compilation unavailable: ${detail}`,
  503,
);

export const KILN_ERR_DIST_LISTEN = createError(
  'KILN_ERR_DIST_LISTEN',
  (what: string, addr: string, detail: string) => `the ${what} cannot listen on ${addr}: ${detail}`,
);

export const KILN_ERR_TOOLCHAIN_NOT_FOUND = createError(
  'KILN_ERR_TOOLCHAIN_NOT_FOUND',
  (compiler: string) => `compiler ${compiler} not found: give its path or a name on PATH`,
  400,
);
export const KILN_ERR_TOOLCHAIN_UNSUPPORTED = createError(
  'KILN_ERR_TOOLCHAIN_UNSUPPORTED',
  (compiler: string, detail: string) => `cannot package ${compiler}: ${detail} (kiln packages gcc and clang)`,
  400,
);
export const KILN_ERR_TOOLCHAIN_PACKAGE = createError(
  'KILN_ERR_TOOLCHAIN_PACKAGE',
  (compiler: string, detail: string) => `packaging the toolchain of ${compiler} failed: ${detail}`,
);
export const ALL_ERROR_CODES = [
  KILN_ERR_CONFIG_PARSE,
  KILN_ERR_CONFIG_UNKNOWN_KEY,
  KILN_ERR_CONFIG_INVALID,
  KILN_ERR_CONFIG_MISSING,
  KILN_ERR_CONFIG_PROBLEMS,
  KILN_ERR_PROTOCOL,
  KILN_ERR_DAEMON_UNREACHABLE,
  KILN_ERR_DAEMON_START,
  KILN_ERR_STORAGE_CORRUPT,
  KILN_ERR_STORAGE_NO_CONTAINER,
  KILN_ERR_STORAGE_DENIED,
  KILN_ERR_STORAGE_CREDENTIALS,
  KILN_ERR_STORAGE_REMOTE,
  KILN_ERR_USAGE,
  KILN_ERR_AUTH_INVALID,
  KILN_ERR_AUTH_SECRET,
  KILN_ERR_TLS_CERT,
  KILN_ERR_AUTH_REQUIRED,
  KILN_ERR_AUTH_FORBIDDEN,
  KILN_ERR_DIST_BAD_REQUEST,
  KILN_ERR_DIST_NOT_FOUND,
  KILN_ERR_DIST_UNSUPPORTED_TYPE,
  KILN_ERR_DIST_TOO_LARGE,
  KILN_ERR_DIST_RATE_LIMITED,
  KILN_ERR_DIST_TOOLCHAIN_DIGEST,
  KILN_ERR_DIST_TOOLCHAIN_MISSING,
  KILN_ERR_DIST_TOOLCHAIN_UNAVAILABLE,
  KILN_ERR_DIST_UNAVAILABLE,
  KILN_ERR_DIST_LISTEN,
  KILN_ERR_TOOLCHAIN_NOT_FOUND,
  KILN_ERR_TOOLCHAIN_UNSUPPORTED,
  KILN_ERR_TOOLCHAIN_PACKAGE,
  KILN_ERR_TOOLCHAIN_ELF,
  KILN_ERR_TOOLCHAIN_UNSAFE,
  KILN_ERR_TOOLCHAIN_EXTRACT,
].map((f) => f.code);
