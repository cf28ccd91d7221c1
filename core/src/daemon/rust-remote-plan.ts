/**
 * The remote plan of a rustc compile: a library crate (rlib/rmeta) is sent with every file it
 * reads — its sources, `include!`d files (a build script's OUT_DIR among them), and the extern
 * crates it loads — as a local dep-info run lists them (`-Z binary-dep-depinfo`, which names the
 * crates too). The worker recreates them at the same absolute paths below one directory and runs
 * rustc in the client's working directory (`env -C`), so rlibs, rmeta and dep-info are byte for
 * byte what a local compile writes: no path remapping. Proc-macros and build scripts link with the
 * host's linker and run on the client: they stay local.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { ToolchainSpec } from '@kiln/plugins';
import { readOutputFile } from '../cache/outputs.js';
import { parseRustDepInfo } from '../compiler/depfile.js';
import { runCaptured } from '../compiler/run.js';
import { type RustCompile, withoutEmit } from '../compiler/rustc-args.js';
import type { Logger } from '../log.js';
import type { CompileRequest } from './compile-request.js';
import type { RemoteJob, RemotePlan } from './remote-compile.js';
import { scratchFile } from './scratch.js';

/** Library crate types: rustc writes them without a linker. */
const REMOTE_CRATE_TYPES = new Set(['lib', 'rlib']);
/** coreutils env in the toolchain root: runs rustc in the client's working directory. */
const ENV_PROGRAM = '/usr/bin/env';
/**
 * Directories the job's files cannot sit below: the sandbox mounts the job directory over the
 * common directory of its files, which must not hide the toolchain root's own (/usr, /lib, /rust).
 */
const SYSTEM_DIRS = /^\/(usr|lib|lib32|lib64|libx32|bin|sbin|etc|rust|proc|dev|sys|run)(\/|$)/;
/** Variables the compile may read besides the ones its dep-info names and cargo's. */
const JOB_ENV = ['OUT_DIR', 'RUSTC_BOOTSTRAP', 'RUSTC_FORCE_RUSTC_VERSION', 'SOURCE_DATE_EPOCH'];

/** The deepest directory holding every path. */
export function commonDirectory(paths: readonly string[]): string {
  let parts = path.dirname(paths[0]!).split('/');
  for (const p of paths.slice(1)) {
    const other = path.dirname(p).split('/');
    let i = 0;
    while (i < parts.length && i < other.length && parts[i] === other[i]) i++;
    parts = parts.slice(0, i);
  }
  return parts.join('/') || '/';
}

/** rustc's stderr with nothing but artifact notifications (`--json=artifacts`): safe to replay as it is. */
export function onlyArtifactNotifications(stderr: Buffer): boolean {
  for (const line of stderr.toString('utf8').split('\n')) {
    if (line === '') continue;
    try {
      if ((JSON.parse(line) as { $message_type?: string }).$message_type !== 'artifact') return false;
    } catch {
      return false;
    }
  }
  return true;
}

/** Why a crate compiles locally whatever the cluster holds (judged from its arguments alone). */
export function rustKeptLocal(parsed: RustCompile): string | undefined {
  const foreign = parsed.crateTypes.find((t) => !REMOTE_CRATE_TYPES.has(t));
  if (foreign) return `crate type ${foreign} (compiled locally)`;
  if (parsed.args.some((a) => a.startsWith('-l')) || parsed.searchDirs.some((d) => d.kind !== 'crate'))
    return 'native libraries';
  if (parsed.target?.endsWith('.json')) return 'custom target spec';
  return undefined;
}

export interface RustPlanContext {
  readonly rustc: string;
  readonly sysroot: string;
  readonly parsed: RustCompile;
  /** [kind, absolute path] of every output. */
  readonly outputs: readonly (readonly [string, string])[];
  readonly req: CompileRequest;
  readonly env: Readonly<Record<string, string>>;
  readonly log?: Logger;
  /** The variables that make up the crate's key (cargo's and rustc's), see keyEnvironment. */
  readonly keyEnv: readonly (readonly [string, string | undefined])[];
}

/**
 * The plan and the directory the job's paths are relative to, or why the crate compiles locally. Runs the dep-info pass (a parse and macro expansion,
 * no code generation) to learn the files the compile reads.
 */
export async function rustRemotePlan(
  ctx: RustPlanContext,
): Promise<{ plan: RemotePlan; base: string } | { local: string }> {
  const { parsed, req } = ctx;
  const kept = rustKeptLocal(parsed);
  if (kept) return { local: kept };
  const files = await readFiles(ctx);
  if ('local' in files) return files;
  const outputs = ctx.outputs.map(([, file]) => file);
  const base = commonDirectory([path.join(req.cwd, '.'), ...files.list.map(([f]) => f), ...outputs]);
  if (base === '/' || SYSTEM_DIRS.test(base))
    return { local: 'sources and outputs share no directory (e.g. a system registry)' };
  const env: Record<string, string> = {};
  const wanted = new Set([...ctx.keyEnv.map(([n]) => n), ...JOB_ENV, ...files.envNames]);
  for (const name of wanted) if (ctx.env[name] !== undefined) env[name] = ctx.env[name];
  const explicitTarget = parsed.target !== undefined;
  const rel = (p: string) => path.relative(base, p);
  const plan: RemotePlan = {
    program: ctx.rustc,
    job(spec: ToolchainSpec): RemoteJob {
      // A worker of another host compiles for the client's target; naming the host's own target
      // explicitly changes nothing in the outputs.
      const target = !explicitTarget && spec.targetTriple ? ['--target', spec.targetTriple] : [];
      return {
        cwd: base,
        argv: [ENV_PROGRAM, '-C', req.cwd, spec.compiler, ...parsed.args, ...target],
        env,
        inputs: [
          ...files.list.map(([file, data]) => ({ path: rel(file), data })),
          // rustc writes its dep-info without making the directory first.
          ...[...new Set(outputs.map((o) => path.dirname(o)))].map((dir) => ({
            path: rel(path.join(dir, '.kiln-out-dir')),
            data: Buffer.alloc(0),
          })),
        ],
        outputs: outputs.map(rel),
      };
    },
    acceptStderr: onlyArtifactNotifications,
  };
  return { plan, base };
}

/** Every file the compile reads outside the sysroot, with its bytes; the variables it reads. */
async function readFiles(
  ctx: RustPlanContext,
): Promise<{ list: [string, Buffer][]; envNames: string[] } | { local: string }> {
  const { parsed, req } = ctx;
  const own = scratchFile('rust');
  const startedMs = performance.now();
  try {
    const run = await runCaptured(
      ctx.rustc,
      ctx.rustc,
      [...withoutEmit(parsed.args), `--emit=dep-info=${own}`, '-Zbinary-dep-depinfo'],
      req.cwd,
      // -Z on a stable rustc, for this listing only; the compile itself runs as the user's.
      { ...ctx.env, RUSTC_BOOTSTRAP: '1' },
    );
    if (run.exitCode !== 0 || run.failure) return { local: 'dep-info run failed' };
    const info = parseRustDepInfo(readOutputFile('/', own)?.toString() ?? '');
    if (!info) return { local: 'dep-info run failed' };
    const list: [string, Buffer][] = [];
    const seen = new Set<string>();
    for (const file of info.files) {
      const abs = path.resolve(req.cwd, file);
      if (abs.startsWith(`${ctx.sysroot}/`) || seen.has(abs)) continue;
      seen.add(abs);
      let data: Buffer;
      try {
        data = fs.readFileSync(abs);
      } catch {
        return { local: 'an input cannot be read' };
      }
      list.push([abs, data]);
    }
    ctx.log?.debug(
      `${parsed.crateName}: dep-info run ${(performance.now() - startedMs).toFixed(0)} ms, ${list.length} files to send`,
    );
    return { list, envNames: info.env.map(([name]) => name) };
  } finally {
    fs.rmSync(own, { force: true });
  }
}
