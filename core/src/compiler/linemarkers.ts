export interface IncludedFiles {
  /** Every file the run entered, in order of first appearance. */
  readonly files: string[];
  /** Those the preprocessor treated as system headers (flag 3 on a marker). */
  readonly system: Set<string>;
}

/**
 * Reads the files a preprocessor run entered from its line markers (`# 12 "dir/x.h" 1 3`).
 * Pseudo-files such as <built-in> and the working-directory marker that -g adds are left out.
 */
export function readLineMarkers(preprocessed: Buffer): IncludedFiles {
  const seen = new Set<string>();
  const system = new Set<string>();
  const text = preprocessed.toString('latin1');
  let pos = 0;
  while (pos < text.length) {
    if (text.charCodeAt(pos) === 0x23 /* # */) {
      const end = text.indexOf('\n', pos);
      const line = text.slice(pos, end === -1 ? text.length : end);
      const m = /^#(?:line)? \d+ "((?:[^"\\]|\\.)*)"((?: \d)*)/.exec(line);
      if (m) {
        const file = m[1]!.replace(/\\(.)/g, '$1');
        if (!file.startsWith('<') && !file.endsWith('//')) {
          seen.add(file);
          if (m[2]!.split(' ').includes('3')) system.add(file);
        }
      }
    }
    const next = text.indexOf('\n#', pos);
    if (next === -1) break;
    pos = next + 1;
  }
  const utf8 = (f: string) => Buffer.from(f, 'latin1').toString();
  return { files: [...seen].map(utf8), system: new Set([...system].map(utf8)) };
}

/** The files a preprocessor run entered, from its line markers. */
export function includedFiles(preprocessed: Buffer): string[] {
  return readLineMarkers(preprocessed).files;
}
