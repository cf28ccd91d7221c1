/**
 * Argument parsing for nvcc: one `.cu` file compiled with `-c` (or `-dc`) into one object. The
 * whole call is cached as a unit; nvcc's internal stages (cudafe++, cicc, ptxas, fatbinary, the
 * host compiler) are not split. No single `-E` run shows every header (device passes see other
 * `#if` branches), so headers come from nvcc's own `-MD` depfile, which covers all passes.
 */
import path from 'node:path';
import type { CacheableCompile, NotCacheable } from './gcc-args.js';

/** Options whose value may be the next argument (nvcc also accepts `--opt=value` and `-opt=value`). */
const WITH_VALUE = new Set([
  '-o',
  '--output-file',
  '-x',
  '--x',
  '-ccbin',
  '--compiler-bindir',
  '-arch',
  '--gpu-architecture',
  '-code',
  '--gpu-code',
  '-gencode',
  '--generate-code',
  '-I',
  '--include-path',
  '-D',
  '--define-macro',
  '-U',
  '--undefine-macro',
  '-include',
  '--pre-include',
  '-isystem',
  '--system-include',
  '-L',
  '--library-path',
  '-l',
  '--library',
  '-Xcompiler',
  '--compiler-options',
  '-Xptxas',
  '--ptxas-options',
  '-Xlinker',
  '--linker-options',
  '-Xnvlink',
  '--nvlink-options',
  '-Xarchive',
  '--archive-options',
  '-std',
  '--std',
  '-MF',
  '--dependency-output',
  '-MT',
  '--dependency-target-name',
  '-odir',
  '--output-directory',
  '-maxrregcount',
  '--maxrregcount',
  '-t',
  '--threads',
  '-rdc',
  '--relocatable-device-code',
  '-m',
  '--machine',
  '-default-stream',
  '--default-stream',
  '-cudart',
  '--cudart',
  '-cudadevrt',
  '--cudadevrt',
  '-split-compile',
  '--split-compile',
  '-diag-suppress',
  '--diag-suppress',
  '-diag-warn',
  '--diag-warn',
  '-diag-error',
  '--diag-error',
  '-ldir',
  '--libdevice-directory',
  '-keep-dir',
  '--keep-dir',
  '-time',
  '--time',
  '-fdevice-time-trace',
]);

/** Modes that do not produce one object from one source. */
const OTHER_MODES = new Set([
  '-E',
  '--preprocess',
  '-M',
  '--generate-dependencies',
  '-MM',
  '--generate-nonsystem-dependencies',
  '-ptx',
  '--ptx',
  '-cubin',
  '--cubin',
  '-fatbin',
  '--fatbin',
  '-optix-ir',
  '-lib',
  '--lib',
  '-link',
  '--link',
  '-dlink',
  '--device-link',
  '-run',
  '--run',
  '-dryrun',
  '--dryrun',
  '-keep',
  '--keep',
  '-save-temps',
  '--save-temps',
  '-optf',
  '--options-file',
  '--version',
  '-V',
  '--help',
  '-h',
  // Side outputs kiln does not collect, or inputs (libdevice) it does not hash.
  '-time',
  '--time',
  '-fdevice-time-trace',
  '-keep-dir',
  '--keep-dir',
  '-ldir',
  '--libdevice-directory',
]);

/** Host-compiler options (in -Xcompiler) that write files beside the object or need the host CPU. */
const HOST_SIDE_OUTPUT =
  /^-(M|save-temps|fdump-|fstack-usage|fcallgraph-info|ftime-trace|gsplit-dwarf|-coverage|ftest-coverage|fprofile-arcs|aux-info)/;

const COMPILE_FLAGS = new Set(['-c', '--compile', '-dc', '--device-c']);

const no = (reason: string): NotCacheable => ({ cacheable: false, reason });

/** Splits `--opt=value`/`-opt=value`/`-opt value` into option and value. */
function split(arg: string, next: string | undefined): { opt: string; value?: string; usedNext: boolean } {
  const eq = arg.indexOf('=');
  if (eq > 0 && WITH_VALUE.has(arg.slice(0, eq)))
    return { opt: arg.slice(0, eq), value: arg.slice(eq + 1), usedNext: false };
  if (WITH_VALUE.has(arg)) return { opt: arg, value: next, usedNext: true };
  // -I/-D/-U/-L/-l take attached values too.
  if (/^-[IDULl]./.test(arg)) return { opt: arg.slice(0, 2), value: arg.slice(2), usedNext: false };
  return { opt: arg, usedNext: false };
}

/** The result carries `hostCompiler`: the -ccbin value (a program or a directory), when given. */
export type NvccCompile = CacheableCompile & { readonly hostCompiler: string | undefined };

export function parseNvccArgs(args: readonly string[]): NvccCompile | NotCacheable {
  const inputs: string[] = [];
  let compile = false;
  let output: string | undefined;
  let outputDir: string | undefined;
  let language: string | undefined;
  let hostCompiler: string | undefined;
  let depFile: string | undefined;
  let depListing: 'none' | 'all' | 'partial' = 'none';
  let keyHostCpu = false;

  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (!arg.startsWith('-')) {
      inputs.push(arg);
      continue;
    }
    const { opt, value, usedNext } = split(arg, args[i + 1]);
    if (usedNext) i++;
    if (WITH_VALUE.has(opt) && value === undefined) return no(`${opt} without a value`);
    if (OTHER_MODES.has(opt)) return no(`nvcc ${opt}`);
    if (COMPILE_FLAGS.has(opt)) compile = true;
    else if (opt === '-o' || opt === '--output-file') output = value;
    else if (opt === '-odir' || opt === '--output-directory') outputDir = value;
    else if (opt === '-x' || opt === '--x') language = value;
    else if (opt === '-ccbin' || opt === '--compiler-bindir') hostCompiler = value;
    else if (opt === '-MF' || opt === '--dependency-output') depFile = value;
    else if (opt === '-MD' || opt === '--generate-dependencies-with-compile') depListing = 'all';
    else if (opt === '-MMD' || opt === '--generate-nonsystem-dependencies-with-compile')
      depListing = 'partial';
    else if (opt === '-Xcompiler' || opt === '--compiler-options') {
      for (const hostArg of (value ?? '').split(/[\s,]+/)) {
        if (HOST_SIDE_OUTPUT.test(hostArg)) return no(`host compiler option ${hostArg}`);
        if (/^-m(arch|tune|cpu)=native$/.test(hostArg)) keyHostCpu = true;
      }
    } else if ((opt === '-arch' || opt === '--gpu-architecture') && /native/.test(value ?? '')) {
      return no('-arch=native (the local GPU)');
    }
  }
  if (!compile) return no('nvcc call that does not compile (linking or another mode)');
  if (inputs.length !== 1) return no(inputs.length ? 'multiple input files' : 'no input file');
  const input = inputs[0]!;
  if ((language ?? path.extname(input).slice(1)) !== 'cu') return no('nvcc input that is not CUDA');
  if (depListing !== 'none' && !depFile) return no('-MD without -MF');
  if (depListing === 'none' && depFile) return no('-MF without -MD'); // nvcc refuses it
  const object = output ?? path.join(outputDir ?? '', `${path.basename(input, path.extname(input))}.o`);
  return {
    cacheable: true,
    family: 'nvcc',
    args,
    input,
    language: 'cu',
    needsPreprocessor: true,
    dependModeOnly: true,
    output: object,
    depFile,
    depListing,
    extraOutputs: [],
    preprocessArgs: [],
    remote: { ok: false, reason: 'nvcc is not distributed' },
    // nvcc writes the source's absolute path into the object: the whole call, cwd included, is the key.
    keyArgs: args,
    keyCwd: true,
    keyHostCpu,
    keyFiles: [],
    includeDirs: [],
    toolDirs: [],
    forcedIncludes: [],
    recordsCommandLine: false,
    hostCompiler,
  };
}
