/**
 * Reads the files a preprocessor run entered from its line markers (`# 12 "dir/x.h" 1`).
 * Pseudo-files such as <built-in> and the working-directory marker that -g adds are left out.
 */
export function includedFiles(preprocessed: Buffer): string[] {
  const seen = new Set<string>();
  const text = preprocessed.toString('latin1');
  let pos = 0;
  while (pos < text.length) {
    if (text.charCodeAt(pos) === 0x23 /* # */) {
      const end = text.indexOf('\n', pos);
      const line = text.slice(pos, end === -1 ? text.length : end);
      const m = /^#(?:line)? \d+ "((?:[^"\\]|\\.)*)"/.exec(line);
      if (m) {
        const file = m[1]!.replace(/\\(.)/g, '$1');
        if (!file.startsWith('<') && !file.endsWith('//')) seen.add(file);
      }
    }
    const next = text.indexOf('\n#', pos);
    if (next === -1) break;
    pos = next + 1;
  }
  return [...seen].map((f) => Buffer.from(f, 'latin1').toString());
}
