import fs from 'node:fs';
import path from 'node:path';

/** Splits a response file the way gcc's libiberty does: whitespace, quotes, backslash escapes. */
export function splitResponseFile(text: string): string[] {
  const out: string[] = [];
  let cur = '';
  let inArg = false;
  let quote: '"' | "'" | undefined;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (ch === '\\' && i + 1 < text.length) {
      cur += text[++i];
      inArg = true;
    } else if (quote) {
      if (ch === quote) quote = undefined;
      else cur += ch;
    } else if (ch === '"' || ch === "'") {
      quote = ch;
      inArg = true;
    } else if (/\s/.test(ch)) {
      if (inArg) out.push(cur);
      cur = '';
      inArg = false;
    } else {
      cur += ch;
      inArg = true;
    }
  }
  if (inArg) out.push(cur);
  return out;
}

/**
 * Expands `@file` arguments recursively (relative to cwd, like gcc). Returns undefined when a
 * response file cannot be read: gcc would then take `@file` literally, which kiln does not cache.
 */
export function expandResponseFiles(args: readonly string[], cwd: string, depth = 0): string[] | undefined {
  if (depth > 10) return undefined;
  const out: string[] = [];
  for (const arg of args) {
    if (arg.startsWith('@') && arg.length > 1) {
      let text: string;
      try {
        text = fs.readFileSync(path.resolve(cwd, arg.slice(1)), 'utf8');
      } catch {
        return undefined;
      }
      const inner = expandResponseFiles(splitResponseFile(text), cwd, depth + 1);
      if (!inner) return undefined;
      out.push(...inner);
    } else {
      out.push(arg);
    }
  }
  return out;
}
