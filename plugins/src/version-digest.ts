import { createHash } from 'node:crypto';

/**
 * The digest of a toolchain named by version (`ToolchainSpec.version`): sha256 of the kind and the
 * fields in name order. Clients name such a toolchain by it, and a worker recomputes it from the
 * spec it receives, so that a spec cannot claim another toolchain's digest.
 */
export function versionDigest(kind: string, version: Readonly<Record<string, string>>): string {
  const fields = Object.keys(version)
    .sort()
    .map((k) => [k, version[k]]);
  return createHash('sha256')
    .update(JSON.stringify([kind, fields]))
    .digest('hex');
}
