import type { ObjectSchema } from '@kiln/plugins';

/** One `[[dist.toolchains]]` entry, with sccache-dist's names. */
export interface ToolchainEntry {
  readonly type: 'path_override' | 'no_dist';
  /** The compiler as the client calls it; `C:\…`, `C:/…` and POSIX paths all work. */
  readonly compiler_executable: string;
  /** path_override: the Linux toolchain archive (a plain or gzip'd tar), an absolute path. */
  readonly archive?: string;
  /** path_override: the compiler's absolute path inside the archive. */
  readonly archive_compiler_executable?: string;
  /** path_override, optional: the host triple the archive's compiler must run on. */
  readonly host_triple?: string;
}

/** `[dist.resolver_config.path-override]` (or the `[[dist.toolchains]]` the daemon hands over). */
export interface PathOverrideConfig {
  readonly toolchains: readonly ToolchainEntry[];
}

export const configSchema: ObjectSchema = {
  type: 'object',
  properties: {
    toolchains: {
      type: 'array',
      description: 'Compilers mapped to prepared archives, or kept local.',
      items: {
        type: 'object',
        required: ['type', 'compiler_executable'],
        properties: {
          type: { type: 'string', enum: ['path_override', 'no_dist'] },
          compiler_executable: { type: 'string', pattern: '\\S', format: 'a text that is not blank' },
          archive: { type: 'string', pattern: '^/', format: 'an absolute path' },
          archive_compiler_executable: { type: 'string', pattern: '^/', format: 'an absolute path' },
          host_triple: {
            type: 'string',
            pattern: '^[A-Za-z0-9_.]+(-[A-Za-z0-9_.]+)+$',
            format: 'a host triple such as aarch64-linux-gnu',
          },
        },
      },
    },
  },
};
