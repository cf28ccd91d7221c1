import path from 'node:path';
import type { Family } from './gcc-args.js';

const GCC_NAME = /(^|[-/])(gcc|g\+\+|cc|c\+\+)(-[0-9.]+)?$/;
const CLANG_NAME = /(^|[-/])clang(\+\+)?(-[0-9.]+)?$/;

/**
 * Tells gcc from clang by the program's name and, because `cc` or `gcc` may be clang in disguise
 * (macOS, FreeBSD), by its `--version` banner. Undefined: not a compiler kiln supports.
 */
export function detectFamily(name: string, resolved: string, versionBanner: string): Family | undefined {
  if (!looksLikeCCompiler(name, resolved)) return undefined;
  if (/clang version/i.test(versionBanner)) return 'clang';
  if (/Free Software Foundation|\(GCC\)|gcc version/i.test(versionBanner)) return 'gcc';
  return undefined;
}

/** Names worth asking `--version`: the same test as above, before running anything. */
export function looksLikeCCompiler(name: string, resolved: string): boolean {
  return [path.basename(name), path.basename(resolved)].some((n) => GCC_NAME.test(n) || CLANG_NAME.test(n));
}

const RUSTC_NAME = /^rustc(-[0-9.]+)?$/;

/** rustc, by the name cargo or the user gave or the file it resolves to (rustup's proxy is a link to `rustup`). */
export function looksLikeRustc(name: string, resolved: string): boolean {
  return [path.basename(name), path.basename(resolved)].some((n) => RUSTC_NAME.test(n));
}

/** nvcc, CUDA's compiler driver. */
export function looksLikeNvcc(name: string, resolved: string): boolean {
  return [path.basename(name), path.basename(resolved)].some((n) => n === 'nvcc');
}
