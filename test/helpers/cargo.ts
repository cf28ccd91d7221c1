import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** Debian's `librust-*-dev` packages put crate sources here; cargo builds from it offline. */
export const DEBIAN_REGISTRY = '/usr/share/cargo/registry';

/**
 * Writes `.cargo/config.toml` that replaces crates.io by a registry directory (Debian's, or a copy
 * of it placed elsewhere, as `vendorRegistry` makes), offline.
 */
export function offlineCargoConfig(projectDir: string, registry = DEBIAN_REGISTRY): void {
  fs.mkdirSync(path.join(projectDir, '.cargo'), { recursive: true });
  fs.writeFileSync(
    path.join(projectDir, '.cargo', 'config.toml'),
    [
      '[source.crates-io]',
      'replace-with = "debian"',
      '[source.debian]',
      `directory = "${registry}"`,
      '[net]',
      'offline = true',
      '',
    ].join('\n'),
  );
}

/**
 * A copy of Debian's registry under `dir`, where a user's registry would be (~/.cargo): crates
 * from a directory tree shared with the build can be compiled on a cluster, crates under /usr
 * cannot (see rust-remote-plan.ts).
 */
export function vendorRegistry(dir: string): string {
  const dest = path.join(dir, 'registry');
  fs.cpSync(DEBIAN_REGISTRY, dest, { recursive: true, dereference: true });
  return dest;
}

/**
 * The environment cargo needs inside a test sandbox whose HOME is a temp dir: rustup's toolchains
 * stay where they are installed; cargo's own home (registry cache, locks) is the sandbox's.
 */
export function cargoEnv(sandboxDir: string): NodeJS.ProcessEnv {
  return {
    RUSTUP_HOME: process.env.RUSTUP_HOME ?? path.join(os.homedir(), '.rustup'),
    CARGO_HOME: path.join(sandboxDir, 'cargo-home'),
    CARGO_TERM_COLOR: 'never',
  };
}

/** Every file cargo wrote under target/<profile>/deps that is a library or metadata, by name. */
export function depsArtifacts(targetDir: string, profile = 'debug'): Map<string, Buffer> {
  const dir = path.join(targetDir, profile, 'deps');
  const out = new Map<string, Buffer>();
  for (const name of fs.readdirSync(dir).sort()) {
    if (/\.(rlib|rmeta|so)$/.test(name)) out.set(name, fs.readFileSync(path.join(dir, name)));
  }
  return out;
}
