/**
 * A TOML syntax error as one line a person can act on: what is wrong and where, without smol-toml's
 * code excerpt: `invalid value at line 2, column 5 (TOML syntax: key = "text", key = 10, [table])`.
 */
export function tomlErrorDetail(err: unknown): string {
  const { line, column, message } = err as Error & { line?: number; column?: number };
  const what =
    (String(message).split('\n')[0] ?? '').replace(/^Invalid TOML document: /, '') || 'syntax error';
  const at = line ? ` at line ${line}${column ? `, column ${column}` : ''}` : '';
  return `${what}${at} (TOML syntax: key = "text", key = 10, [table])`;
}
