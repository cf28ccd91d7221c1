/** One compiler call as the thin client forwards it: what every compiler family starts from. */
export interface CompileRequest {
  readonly cwd: string;
  /** [compiler as typed, ...args] */
  readonly argv: readonly string[];
  readonly env: Readonly<Record<string, string>>;
  /** Real paths that are kiln itself and must never be taken for the compiler. */
  readonly skip: ReadonlySet<string>;
  readonly stderrTty: boolean;
  /** gcc sizes quoted source lines to a terminal on stdin. */
  readonly stdinTty?: boolean;
  /** The caller's umask, for the modes of the outputs kiln writes. */
  readonly umask?: number;
}
