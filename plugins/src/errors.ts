/**
 * The error type every kiln package throws, and the plugin SDK's own error codes
 * (fastify's lib/errors.js style: a code names the area and what went wrong, the message
 * tells the user what to do, `statusCode` is what an HTTP server answers with it).
 */
export class KilnError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly statusCode = 500,
  ) {
    super(message);
    this.name = 'KilnError';
  }
}

export interface KilnErrorFactory<A extends unknown[]> {
  (...args: A): KilnError;
  readonly code: string;
  readonly statusCode: number;
}

export function createError<A extends unknown[]>(
  code: string,
  template: (...args: A) => string,
  statusCode = 500,
): KilnErrorFactory<A> {
  const make = (...args: A) => new KilnError(code, template(...args), statusCode);
  return Object.assign(make, { code, statusCode });
}

export const KILN_ERR_PLUGIN_NOT_FOUND = createError(
  'KILN_ERR_PLUGIN_NOT_FOUND',
  (spec: string, kind: string, tried: string, available: readonly string[]) =>
    `${kind} plugin "${spec}" is not installed (looked for ${tried}); available ${kind} plugins: ${
      available.length ? available.join(', ') : 'none'
    }`,
);
export const KILN_ERR_PLUGIN_BROKEN = createError(
  'KILN_ERR_PLUGIN_BROKEN',
  (spec: string, detail: string) => `plugin "${spec}" failed to load: ${detail}`,
);
export const KILN_ERR_PLUGIN_INVALID = createError(
  'KILN_ERR_PLUGIN_INVALID',
  (spec: string, detail: string) =>
    `plugin "${spec}" is not a kiln plugin: ${detail} (its default export must come from definePlugin)`,
);
export const KILN_ERR_PLUGIN_API_VERSION = createError(
  'KILN_ERR_PLUGIN_API_VERSION',
  (spec: string, got: unknown, supported: number) =>
    `plugin "${spec}" was written for plugin API version ${String(got)}, this kiln supports version ${supported}: upgrade the plugin or kiln`,
);
export const KILN_ERR_PLUGIN_CONFIG = createError(
  'KILN_ERR_PLUGIN_CONFIG',
  (plugin: string, detail: string) => `invalid configuration for plugin "${plugin}": ${detail}`,
);
export const KILN_ERR_PLUGIN_REGISTER = createError(
  'KILN_ERR_PLUGIN_REGISTER',
  (plugin: string, detail: string) => `plugin "${plugin}" failed to register: ${detail}`,
);
export const KILN_ERR_SANDBOX_UNAVAILABLE = createError(
  'KILN_ERR_SANDBOX_UNAVAILABLE',
  (sandbox: string, detail: string) => `the ${sandbox} sandbox cannot run here: ${detail}`,
);
export const KILN_ERR_SANDBOX_FAILED = createError(
  'KILN_ERR_SANDBOX_FAILED',
  (sandbox: string, detail: string) => `the ${sandbox} sandbox failed to run a job: ${detail}`,
);
export const KILN_ERR_SANDBOX_JOB_INVALID = createError(
  'KILN_ERR_SANDBOX_JOB_INVALID',
  (detail: string) => `invalid sandbox job: ${detail}`,
  400,
);

export const KILN_ERR_TOOLCHAIN_ELF = createError(
  'KILN_ERR_TOOLCHAIN_ELF',
  (file: string, detail: string) => `cannot tell which machines run ${file}: ${detail}`,
  400,
);
export const KILN_ERR_TOOLCHAIN_UNSAFE = createError(
  'KILN_ERR_TOOLCHAIN_UNSAFE',
  (archive: string, detail: string) => `refusing toolchain archive ${archive}: ${detail}`,
  400,
);
export const KILN_ERR_TOOLCHAIN_EXTRACT = createError(
  'KILN_ERR_TOOLCHAIN_EXTRACT',
  (archive: string, detail: string) => `extracting toolchain archive ${archive} failed: ${detail}`,
);

export const KILN_ERR_RESOLVER_CONFIG = createError(
  'KILN_ERR_RESOLVER_CONFIG',
  (resolver: string, detail: string) => `the ${resolver} toolchain resolver cannot start: ${detail}`,
);
export const KILN_ERR_RESOLVER_TOOLCHAIN = createError(
  'KILN_ERR_RESOLVER_TOOLCHAIN',
  (resolver: string, compiler: string, detail: string) =>
    `the ${resolver} toolchain resolver cannot provide a toolchain for ${compiler}: ${detail}`,
);
/** A resolver's answer for a compiler that must always compile locally (sccache's type = "no_dist"). */
export const KILN_ERR_RESOLVER_NO_DIST = createError(
  'KILN_ERR_RESOLVER_NO_DIST',
  (compiler: string) => `${compiler} is configured never to be distributed (type = "no_dist")`,
);

export const PLUGIN_ERROR_CODES = [
  KILN_ERR_PLUGIN_NOT_FOUND,
  KILN_ERR_PLUGIN_BROKEN,
  KILN_ERR_PLUGIN_INVALID,
  KILN_ERR_PLUGIN_API_VERSION,
  KILN_ERR_PLUGIN_CONFIG,
  KILN_ERR_PLUGIN_REGISTER,
  KILN_ERR_SANDBOX_UNAVAILABLE,
  KILN_ERR_SANDBOX_FAILED,
  KILN_ERR_SANDBOX_JOB_INVALID,
  KILN_ERR_TOOLCHAIN_ELF,
  KILN_ERR_TOOLCHAIN_UNSAFE,
  KILN_ERR_TOOLCHAIN_EXTRACT,
  KILN_ERR_RESOLVER_CONFIG,
  KILN_ERR_RESOLVER_TOOLCHAIN,
  KILN_ERR_RESOLVER_NO_DIST,
].map((f) => f.code);
