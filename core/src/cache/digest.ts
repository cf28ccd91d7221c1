import { createHash, type Hash } from 'node:crypto';
import fs from 'node:fs';
import { writeOutputFile } from './outputs.js';

export const DIGEST_ALGORITHM = 'sha256';

/** Builds cache keys from labelled parts, so that ["ab","c"] and ["a","bc"] never collide. */
export class KeyHasher {
  private readonly hash: Hash = createHash(DIGEST_ALGORITHM);

  add(label: string, value: string | Buffer | number | boolean | undefined): this {
    const data =
      value === undefined
        ? '\u0000undefined'
        : typeof value === 'string' || Buffer.isBuffer(value)
          ? value
          : String(value);
    const len = Buffer.byteLength(data);
    this.hash.update(`${label}:${len}:`);
    this.hash.update(data);
    return this;
  }

  addList(label: string, values: readonly string[]): this {
    this.add(label, values.length);
    for (const [i, v] of values.entries()) this.add(`${label}[${i}]`, v);
    return this;
  }

  digest(): string {
    return this.hash.digest('hex');
  }
}

export function digestBuffer(data: Buffer): string {
  return createHash(DIGEST_ALGORITHM).update(data).digest('hex');
}

/**
 * What a file's text tells about caching it: each flag makes a compile that reads the file
 * depend on something its bytes do not show.
 */
export interface ContentFlags {
  /** __DATE__ or __TIME__: the output changes with the clock (gcc takes them from SOURCE_DATE_EPOCH). */
  readonly dateTime: boolean;
  /** __TIMESTAMP__: the file's mtime (no compiler takes it from SOURCE_DATE_EPOCH). */
  readonly timestamp: boolean;
  /** An assembler `.incbin`/`.include`, bare or in an asm string: reads a file no depfile lists. */
  readonly asmInclude: boolean;
  /** `__has_include`: the result depends on files that need not exist. */
  readonly hasInclude: boolean;
  /** `#pragma GCC dependency`: compares file mtimes. */
  readonly mtimeDependent: boolean;
  /** The name in the file's first `#include` (gcc looks for `<name>.gch` there), if any. */
  readonly firstInclude: string | undefined;
}

/**
 * Stat fields as numbers: a number stat costs a third less than a bigint one, which counts at one
 * stat per header per hit. A double keeps mtime/ctime to a fraction of a microsecond; an edit made
 * closer to the remembered times than that cannot happen, since only files unchanged for two
 * seconds are remembered and the kernel sets ctime to the time of every change.
 */
interface Memo {
  readonly dev: number;
  readonly ino: number;
  readonly size: number;
  readonly mtimeMs: number;
  readonly ctimeMs: number;
  readonly digest: string;
  readonly flags: ContentFlags;
}

/** An assembler `.incbin`/`.include`: bare, after `;` or a label, or inside a C string (`"\\n.incbin`). */
export const ASM_INCLUDE = /(?:^|[^\w$.]|\\[nt])\.(?:incbin|include)\b/m;
const FIRST_INCLUDE = /^[ \t]*#[ \t]*include[ \t]*["<]([^">\n]+)[">]/m;

/** A NUL byte in the first 4 KiB: a binary, not source text. */
const looksBinary = (data: Buffer) => data.subarray(0, 4096).includes(0);

const NO_FLAGS: ContentFlags = {
  dateTime: false,
  timestamp: false,
  asmInclude: false,
  hasInclude: false,
  mtimeDependent: false,
  firstInclude: undefined,
};

/**
 * Reads the flags from a file's bytes; each regex runs only when a cheap search found its word.
 * A binary (a NUL byte near the start: the compiler's own programs, a .gch) has none.
 */
export function contentFlags(data: Buffer): ContentFlags {
  if (looksBinary(data)) return NO_FLAGS;
  const text = () => data.toString('latin1');
  const has = (word: string) => data.includes(word);
  return {
    dateTime: has('__DATE__') || has('__TIME__'),
    timestamp: has('__TIMESTAMP__'),
    asmInclude: (has('.incbin') || has('.include')) && ASM_INCLUDE.test(text()),
    hasInclude: has('__has_include'),
    mtimeDependent: has('dependency') && /#\s*pragma\s+(GCC\s+)?dependency/.test(text()),
    firstInclude: has('include') ? FIRST_INCLUDE.exec(text())?.[1] : undefined,
  };
}

/**
 * A file whose mtime/ctime is this close to a compile's start (or later) may have changed while
 * the compiler read it. File timestamps come from the kernel's coarse clock, which lags the real
 * time by at most a tick (1–10 ms), so 50 ms catches every change made during a compile.
 */
export const TOO_NEW_MARGIN_MS = 50;

/** Device, inode, size, mtime and ctime: what tells a replaced or edited binary from the one seen before. */
export function statSignature(file: string): string {
  return signatureOf(fs.statSync(file, { bigint: true }));
}

function signatureOf(st: fs.BigIntStats): string {
  return `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
}

/** mtime or ctime, whichever is later, in ms: when the file (or directory) last changed. */
export function changedMsOf(st: fs.BigIntStats): number {
  return Number((st.mtimeNs > st.ctimeNs ? st.mtimeNs : st.ctimeNs) / 1_000_000n);
}

/** Inode, mtime and ctime of a directory: a file added, removed or renamed in it changes them. */
export function dirStampOf(st: fs.BigIntStats): string {
  return `${st.ino}:${st.mtimeNs}:${st.ctimeNs}`;
}

export interface FileDigest {
  readonly digest: string;
  readonly size: number;
  /** mtime or ctime, whichever is later, in ms: lets callers refuse files changed during a compile. */
  readonly changedMs: number;
  readonly flags: ContentFlags;
}

/**
 * Content digests of files, remembered by (device, inode, size, mtime, ctime) so that a warm
 * lookup costs one stat. A file changed within the last two seconds is never remembered: within
 * one timestamp tick an edit could leave every stat field the same.
 */
export class FileDigestCache {
  private readonly memo = new Map<string, Memo>();
  /** Digests of large binaries (a compiler's cc1: 30 MB, ~70 ms to hash) kept across daemon starts. */
  private readonly binaries: Map<string, { sig: string; digest: string }>;

  constructor(
    private readonly maxEntries = 200_000,
    /** Where the binaries' digests are kept between daemons (the runtime dir); none: per process only. */
    private readonly binariesFile?: string,
  ) {
    this.binaries = new Map(binariesFile ? loadBinaries(binariesFile) : []);
  }

  /** Returns undefined when the file cannot be read (missing, a directory, no permission). */
  get(file: string): FileDigest | undefined {
    let st: fs.Stats | undefined;
    try {
      st = fs.statSync(file, { throwIfNoEntry: false });
    } catch {
      return undefined;
    }
    if (!st?.isFile()) return undefined;
    const changedMs = Math.floor(Math.max(st.mtimeMs, st.ctimeMs));
    const known = this.memo.get(file);
    if (
      known &&
      known.ino === st.ino &&
      known.dev === st.dev &&
      known.size === st.size &&
      known.mtimeMs === st.mtimeMs &&
      known.ctimeMs === st.ctimeMs
    ) {
      return { digest: known.digest, size: st.size, changedMs, flags: known.flags };
    }
    const sig = `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`;
    const kept = this.binaries.get(file);
    const read =
      kept?.sig === sig
        ? { digest: kept.digest, flags: NO_FLAGS, length: st.size }
        : readDigest(file, st.size);
    if (!read) return undefined;
    const { digest, flags, length } = read;
    if ('binary' in read && Date.now() - changedMs > 2000 && this.binariesFile) {
      this.binaries.set(file, { sig, digest });
      saveBinaries(this.binariesFile, this.binaries);
    }
    if (Date.now() - changedMs > 2000 && length === st.size) {
      if (this.memo.size >= this.maxEntries) this.memo.clear();
      this.memo.set(file, {
        dev: st.dev,
        ino: st.ino,
        size: st.size,
        mtimeMs: st.mtimeMs,
        ctimeMs: st.ctimeMs,
        digest,
        flags,
      });
    }
    return { digest, size: length, changedMs, flags };
  }
}

/** Files larger than this are read in chunks when they turn out to be binaries (a compiler's cc1). */
const CHUNK = 1 << 20;

/**
 * A file's digest and flags. A binary over one chunk (a NUL byte in its first 4 KiB) is hashed
 * chunk by chunk, so a 30 MB cc1 does not sit in memory whole; anything else is read whole.
 */
function readDigest(
  file: string,
  size: number,
): { digest: string; flags: ContentFlags; length: number; binary?: true } | undefined {
  try {
    if (size <= CHUNK) {
      const data = fs.readFileSync(file);
      return { digest: digestBuffer(data), flags: contentFlags(data), length: data.length };
    }
    const fd = fs.openSync(file, 'r');
    try {
      const chunk = Buffer.allocUnsafe(CHUNK);
      let length = fs.readSync(fd, chunk, 0, CHUNK, 0);
      if (!looksBinary(chunk.subarray(0, length))) {
        const data = fs.readFileSync(file);
        return { digest: digestBuffer(data), flags: contentFlags(data), length: data.length };
      }
      const hash = createHash(DIGEST_ALGORITHM).update(chunk.subarray(0, length));
      for (let got = length; got > 0; length += got) {
        got = fs.readSync(fd, chunk, 0, CHUNK, length);
        hash.update(chunk.subarray(0, got));
      }
      return { digest: hash.digest('hex'), flags: NO_FLAGS, length, binary: true };
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return undefined;
  }
}

function loadBinaries(file: string): [string, { sig: string; digest: string }][] {
  try {
    const data = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<
      string,
      { sig?: unknown; digest?: unknown }
    >;
    return Object.entries(data ?? {}).flatMap(([path, v]) =>
      typeof v?.sig === 'string' && typeof v.digest === 'string'
        ? [[path, { sig: v.sig, digest: v.digest }]]
        : [],
    ) as [string, { sig: string; digest: string }][];
  } catch {
    return []; // missing or damaged: hash again
  }
}

function saveBinaries(file: string, binaries: ReadonlyMap<string, { sig: string; digest: string }>): void {
  try {
    writeOutputFile('/', file, Buffer.from(JSON.stringify(Object.fromEntries(binaries))), { mode: 0o600 });
  } catch {
    // An unwritable runtime dir only costs the hashing again.
  }
}
