/**
 * Reads the prerequisites of the first rule of a Make depfile as gcc and clang write it:
 * continuation lines, `\ ` and `\#` escapes, `$$` for `$`. Later rules (-MP's phony targets) are
 * ignored. Undefined when the text has no rule.
 */
export function parseDepfile(text: string): string[] | undefined {
  const joined = text.replace(/\\\r?\n/g, ' ');
  const line = joined.split(/\r?\n/).find((l) => l.trim() !== '');
  if (!line) return undefined;
  let sep = -1;
  for (let i = 0; i < line.length; i++) {
    if (line[i] === '\\') i++;
    else if (line[i] === ':' && (i + 1 === line.length || /\s/.test(line[i + 1]!))) {
      sep = i;
      break;
    }
  }
  if (sep < 0) return undefined;
  const out: string[] = [];
  let cur = '';
  const rest = line.slice(sep + 1);
  for (let i = 0; i < rest.length; i++) {
    const ch = rest[i]!;
    const next = rest[i + 1];
    if (ch === '\\' && (next === ' ' || next === '#')) {
      cur += next;
      i++;
    } else if (ch === '$' && next === '$') {
      cur += '$';
      i++;
    } else if (/\s/.test(ch)) {
      if (cur) out.push(cur);
      cur = '';
    } else cur += ch;
  }
  if (cur) out.push(cur);
  return out;
}

/** What rustc's `--emit=dep-info` says a crate read: its files, and the environment variables `env!`/`option_env!` looked up. */
export interface RustDepInfo {
  readonly files: readonly string[];
  /** [name, value]; value undefined when the variable was unset. */
  readonly env: readonly (readonly [string, string | undefined])[];
}

/** rustc escapes `\`, newline and carriage return in `# env-dep:` lines. */
function unescapeDepEnv(text: string): string {
  return text.replace(/\\([\\nr])/g, (_, c: string) => (c === 'n' ? '\n' : c === 'r' ? '\r' : '\\'));
}

/**
 * Parses rustc's dep-info: the first rule's prerequisites plus its `# env-dep:NAME[=VALUE]` lines.
 * rustc escapes only spaces in paths (`#` and `$` are written as they are), so only `\ ` is undone.
 */
export function parseRustDepInfo(text: string): RustDepInfo | undefined {
  const lines = text.split('\n');
  const rule = lines.find((l) => l.trim() !== '' && !l.startsWith('#'));
  if (rule === undefined) return undefined;
  // The target ends at the first ": " (or ":" at the end) that is not part of an escaped path.
  const sep = rule.search(/(?<!\\):( |$)/);
  if (sep < 0) return undefined;
  const files = (rule.slice(sep + 1).match(/(?:\\ |\S)+/g) ?? []).map((f) => f.replaceAll('\\ ', ' '));
  const env: [string, string | undefined][] = [];
  for (const line of lines) {
    if (!line.startsWith('# env-dep:')) continue;
    const body = line.slice('# env-dep:'.length);
    // The name is escaped too, but a name never contains '='.
    const eq = body.indexOf('=');
    env.push(
      eq < 0
        ? [unescapeDepEnv(body), undefined]
        : [unescapeDepEnv(body.slice(0, eq)), unescapeDepEnv(body.slice(eq + 1))],
    );
  }
  return { files, env };
}
