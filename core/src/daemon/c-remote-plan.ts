/**
 * The remote plan of a gcc/clang/nvcc compile: its preprocessed source (or directives-only output)
 * as the one input, compiled at the path the user typed so that debug info names the same file.
 */
import path from 'node:path';
import { type CacheableCompile, Languages } from '../compiler/gcc-args.js';
import type { RemotePlan } from './remote-compile.js';
import { codegenKey } from './tiny-compiles.js';

const INPUT_NAME = 'kiln-input';
export const C_OUTPUT_NAME = 'kiln-output.o';
/** Environment passed into the sandbox when the client has it: what gcc/clang read. */
const JOB_ENV = ['SOURCE_DATE_EPOCH', 'GCC_COLORS', 'CCC_OVERRIDE_OPTIONS'];

const BUILTIN_MARKER = Buffer.from('# 0 "<built-in>"\n');
const DEFINE = Buffer.from('#define ');

/**
 * gcc's -fdirectives-only output starts with its built-in macros (`# 0 "<built-in>"` blocks before
 * the first other line marker); the remote compiler defines them itself, and defining them twice
 * is an error for some. Only that leading part is scanned: the rest, which is nearly all of it, is
 * passed on as it is.
 */
export function stripBuiltinDefines(text: Buffer): Buffer {
  const kept: Buffer[] = [];
  let pos = 0;
  let builtin = false;
  let markers = 0;
  while (pos < text.length) {
    const nl = text.indexOf(10, pos);
    const end = nl < 0 ? text.length : nl + 1;
    if (text[pos] === 0x23 && text[pos + 1] === 0x20) {
      // "# …": a line marker. The file's name and, with -g, the working directory come first; the
      // first other marker after the built-in block ends the scan (so does a third one before any).
      const isBuiltin = text.subarray(pos, end).equals(BUILTIN_MARKER);
      if (!isBuiltin && (builtin || ++markers > 2)) break;
      builtin = isBuiltin;
      kept.push(text.subarray(pos, end));
    } else if (!(builtin && text.subarray(pos, pos + DEFINE.length).equals(DEFINE))) {
      kept.push(text.subarray(pos, end));
    }
    pos = end;
  }
  kept.push(text.subarray(pos));
  return Buffer.concat(kept);
}

/**
 * Where the remote input goes and how the compile names it. Directives-only output is compiled
 * as source at the path the user typed, so debug info names the same file; inputs outside the
 * working directory sit below it and -fdebug-prefix-map (not recorded in the object) maps them back.
 */
function remoteInput(parsed: CacheableCompile, cwd: string, preprocessed: Buffer) {
  if (!parsed.remote.ok || parsed.remote.style === 'preprocessed') {
    const lang = Languages[parsed.language].preprocessed!;
    const name = `${INPUT_NAME}.${lang === 'c++-cpp-output' ? 'ii' : 'i'}`;
    return { inputs: [{ path: name, data: preprocessed }], inputArg: name, mapArgs: [], lang };
  }
  const data = stripBuiltinDefines(preprocessed);
  // Everything is inlined already; -nostdinc (not recorded in the object) stops gcc looking for
  // stdc-predef.h in a root that has no headers.
  const common = ['-nostdinc'];
  const typed = parsed.input;
  if (path.isAbsolute(typed)) {
    const base = path.join(cwd, '.kiln-abs');
    return {
      inputs: [{ path: path.join(base, typed), data }],
      inputArg: path.join(base, typed),
      mapArgs: [...common, `-fdebug-prefix-map=${base}=`],
      lang: parsed.language,
    };
  }
  const ups = /^(\.\.\/)+/.exec(path.posix.normalize(typed))?.[0].length ?? 0;
  if (ups === 0)
    return { inputs: [{ path: typed, data }], inputArg: typed, mapArgs: common, lang: parsed.language };
  // "../src/a.c" becomes ".kiln-up/1/../src/a.c": the same name once the prefix is mapped away.
  const depth = ups / 3;
  const stem = `.kiln-up/${Array.from({ length: depth }, (_, i) => i + 1).join('/')}/`;
  const real = path.posix.normalize(stem + typed);
  return {
    inputs: [
      { path: real, data },
      { path: `${stem}.keep`, data: Buffer.alloc(0) },
    ],
    inputArg: stem + typed,
    mapArgs: [...common, `-fdebug-prefix-map=${stem}=`],
    lang: parsed.language,
  };
}

/**
 * The plan for a compile whose `parsed.remote` is ok; the worker writes the object as
 * C_OUTPUT_NAME. Diagnostics from the remote input would quote the wrong source lines (all headers
 * are inlined into one file), so any stderr sends the compile back to the local compiler.
 */
export function cRemotePlan(
  program: string,
  parsed: CacheableCompile,
  preprocessed: Buffer,
  cwd: string,
  env: Readonly<Record<string, string>>,
): RemotePlan {
  if (!parsed.remote.ok) throw new Error('cRemotePlan: not distributable');
  const compileArgs = parsed.remote.compileArgs;
  return {
    program,
    localUnlessForced: path.basename(parsed.input).startsWith('conftest') ? 'configure test' : undefined,
    speed: {
      key: codegenKey(program, parsed.language, compileArgs),
      bytes: preprocessed.length,
      label: parsed.input,
    },
    job(spec) {
      const { inputs, inputArg, mapArgs, lang } = remoteInput(parsed, cwd, preprocessed);
      const jobEnv: Record<string, string> = { PATH: '/usr/bin:/bin' };
      for (const name of JOB_ENV) if (env[name] !== undefined) jobEnv[name] = env[name];
      // Only the C.UTF-8 locale travels with a toolchain: it keeps gcc's UTF-8 quotes in messages.
      if (/utf-?8/i.test(env.LC_ALL || env.LC_MESSAGES || env.LANG || '')) jobEnv.LC_ALL = 'C.UTF-8';
      return {
        cwd,
        argv: [spec.compiler, ...compileArgs, ...mapArgs, '-x', lang, inputArg, '-o', C_OUTPUT_NAME],
        env: jobEnv,
        inputs,
        outputs: [C_OUTPUT_NAME],
      };
    },
    acceptStderr: (stderr) => stderr.length === 0,
  };
}
