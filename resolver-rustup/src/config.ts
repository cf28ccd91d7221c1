import type { ObjectSchema } from '@kiln/plugins';

/** `[dist.resolver_config.rustup]` on clients, `[resolver_config.rustup]` on workers. */
export interface RustupConfig {
  /** rustup itself: a name looked up on PATH, or a path. Workers only. */
  readonly rustup: string;
  /** RUSTUP_HOME for the rustup runs; default rustup's own (RUSTUP_HOME, else ~/.rustup). */
  readonly rustup_home?: string;
  /** Workers: install a missing toolchain (`rustup toolchain install`, `rustup target add`). */
  readonly install: boolean;
  /** Seconds one rustup install may take. */
  readonly install_timeout: number;
  /** A rustup distribution server (RUSTUP_DIST_SERVER) for installs, e.g. a local mirror. */
  readonly dist_server?: string;
  /** Clients: the host triples of the workers that may compile with these toolchains. */
  readonly hosts: readonly string[];
}

export const configSchema: ObjectSchema = {
  type: 'object',
  properties: {
    rustup: { type: 'string', default: 'rustup', description: 'rustup: a name on PATH or a path.' },
    rustup_home: {
      type: 'string',
      pattern: '^/',
      format: 'an absolute path',
      description: 'RUSTUP_HOME for rustup runs.',
    },
    install: {
      type: 'boolean',
      default: false,
      description: 'Install a missing toolchain or target with rustup (workers).',
    },
    install_timeout: { type: 'integer', minimum: 1, default: 900 },
    dist_server: {
      type: 'string',
      pattern: '^https?://',
      format: 'an http(s) URL',
      description: 'RUSTUP_DIST_SERVER for installs.',
    },
    hosts: {
      type: 'array',
      items: { type: 'string' },
      default: ['x86_64-unknown-linux-gnu', 'aarch64-unknown-linux-gnu'],
      description: 'Host triples of the workers that may compile with these toolchains (clients).',
    },
  },
};
