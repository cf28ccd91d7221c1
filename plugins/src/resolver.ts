/** What a toolchain resolver plugin implements: compilers on clients ↔ runnable directories on workers. */

export interface ToolchainSpec {
  /** The resolver kind that understands this toolchain ("archive", "icecc", "rustup", "path_override"). */
  readonly kind: string;
  /** Content digest (sha256 hex of the archive for archive-based kinds); the toolchain's id. */
  readonly digest: string;
  /** Host triples whose machines can execute the toolchain's binaries (read from their ELF headers). */
  readonly hostTriples: readonly string[];
  /** The triple the compiler produces code for. */
  readonly targetTriple?: string;
  /** The compiler's absolute path inside the materialised root. */
  readonly compiler: string;
  /**
   * Set for a toolchain named by version instead of shipped (rustup: `release`, `commit`): what
   * the worker's `resolveVersion` needs to find or install the same toolchain for its own host. Such a
   * spec comes without an archive, and `digest` is a digest of these fields and the kind.
   */
  readonly version?: Readonly<Record<string, string>>;
}

export interface PackagedToolchain {
  readonly spec: ToolchainSpec;
  /**
   * A file holding the archive that workers receive. Absent when the spec is named by version
   * (`spec.version`): nothing is uploaded, the worker resolver's `resolveVersion` finds it.
   */
  readonly archive?: string;
}

export interface MaterialisedToolchain {
  /** A directory a sandbox can use as `toolchainRoot`. */
  readonly root: string;
}

/**
 * Turns a local compiler into a toolchain that workers can run, and (on the worker) an uploaded
 * archive into a directory.
 */
export interface ToolchainResolver {
  /** The `ToolchainSpec.kind` this resolver handles. */
  readonly kind: string;
  /**
   * Client side: package the compiler at `compiler` (an absolute path). Resolves undefined when this
   * resolver does not handle that compiler; rejects with a KilnError when packaging fails.
   */
  package?(compiler: string): Promise<PackagedToolchain | undefined>;
  /**
   * Client side, optional: the package made earlier for `compiler`, when one is stored (a lookup of
   * milliseconds, where `package` may take seconds). With it the client distributes at once after a
   * restart instead of compiling locally while packaging runs again.
   */
  find?(compiler: string): Promise<PackagedToolchain | undefined>;
  /**
   * Worker side: turn a verified archive into a directory under `dest` (which does not exist yet).
   * Rejects with a KilnError, leaving nothing behind, when the archive is unsafe or unreadable.
   */
  materialise(spec: ToolchainSpec, archive: string, dest: string): Promise<MaterialisedToolchain>;
  /**
   * Worker side, for a spec named by version (`spec.version`, no archive): find the toolchain it
   * names for this worker's host (or install it, when the resolver's config allows) and make a
   * directory under `dest` (which does not exist yet) that a sandbox can use as its root, holding
   * `spec.compiler`. Never approximates: a toolchain that is missing and may not be installed, or
   * whose version differs (another commit), rejects with a KilnError, leaving nothing behind.
   */
  resolveVersion?(spec: ToolchainSpec, dest: string): Promise<MaterialisedToolchain>;
}
