import type { ObjectSchema } from '@kiln/plugins';

/** `[dist.resolver_config.icecc]` on clients; workers need no table. */
export interface IceccConfig {
  /** icecream's `icecc-create-env`: a name looked up on PATH, or a path. */
  readonly create_env: string;
  /**
   * Existing tarballs, in icecream's ICECC_VERSION syntax:
   * `<native.tgz>,<platform>:<cross.tgz>=<target>,…`. A compiler no tarball fits is packed with
   * `create_env` instead.
   */
  readonly icecc_version?: string;
  /** Where created tarballs are kept; default `<plugin work dir>/icecc`. */
  readonly cache_dir?: string;
  /** Seconds icecc-create-env may take. */
  readonly create_timeout: number;
}

export const configSchema: ObjectSchema = {
  type: 'object',
  properties: {
    create_env: {
      type: 'string',
      default: 'icecc-create-env',
      description: "icecream's icecc-create-env: a name on PATH or a path.",
    },
    icecc_version: {
      type: 'string',
      pattern: '\\S',
      format: 'a text that is not blank',
      description: 'Existing tarballs as in ICECC_VERSION: <native.tgz>,<platform>:<tgz>=<target>,…',
    },
    cache_dir: {
      type: 'string',
      pattern: '^/',
      format: 'an absolute path',
      description: 'Where created tarballs are kept.',
    },
    create_timeout: { type: 'integer', minimum: 1, default: 300 },
  },
};
