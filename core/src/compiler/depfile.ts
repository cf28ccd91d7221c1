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
