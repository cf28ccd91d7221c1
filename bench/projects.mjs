// The real projects the benchmarks build (Debian's sources, fetched by fetch-sources.sh into
// <work>/src): each has prepare(tool) → its build dir for that tool, and build(tool, dir, jobs)
// → seconds of one build from clean. A tool is { name, wrapper (undefined: plain), env }.
import fs from 'node:fs';
import path from 'node:path';
import { sh, timed } from './util.mjs';

export function makeProjects({ work, jobs: defaultJobs, baseEnv }) {
  /** A CMake project (its Makefile generator), RelWithDebInfo, kiln as CMAKE_CXX_COMPILER_LAUNCHER. */
  const cmakeProject = (name, options) => ({
    prepare(tool) {
      const dir = path.join(work, 'build', `${name}-${tool.name}`);
      if (!fs.existsSync(path.join(dir, 'CMakeCache.txt'))) {
        const launcher = tool.wrapper ? [`-DCMAKE_CXX_COMPILER_LAUNCHER=${tool.wrapper}`] : [];
        const src = path.join(work, 'src', name);
        sh('cmake', ['-S', src, '-B', dir, '-DCMAKE_BUILD_TYPE=RelWithDebInfo', ...options, ...launcher], {
          env: tool.env,
        });
      }
      return dir;
    },
    build(tool, dir, jobs = defaultJobs) {
      sh('cmake', ['--build', dir, '--target', 'clean'], { env: tool.env });
      return timed('cmake', ['--build', dir, '-j', String(jobs)], { env: tool.env });
    },
  });
  return {
    zlib: {
      prepare(tool) {
        const dir = path.join(work, 'build', `zlib-${tool.name}`);
        if (!fs.existsSync(path.join(dir, 'Makefile'))) {
          fs.rmSync(dir, { recursive: true, force: true });
          fs.cpSync(path.join(work, 'src', 'zlib'), dir, { recursive: true });
          sh('./configure', ['--static'], { cwd: dir, env: { ...baseEnv, CC: 'gcc' } });
        }
        return dir;
      },
      build(tool, dir, jobs = defaultJobs) {
        sh('make', ['clean'], { cwd: dir, env: tool.env });
        const cc = tool.wrapper ? `${tool.wrapper} gcc` : 'gcc';
        return timed('make', [`-j${jobs}`, 'libz.a', `CC=${cc}`, 'CFLAGS=-O2 -g -D_LARGEFILE64_SOURCE=1'], {
          cwd: dir,
          env: tool.env,
        });
      },
    },
    'yaml-cpp': cmakeProject('yaml-cpp', ['-DYAML_CPP_BUILD_TESTS=OFF', '-DYAML_CPP_BUILD_TOOLS=OFF']),
    leveldb: cmakeProject('leveldb', ['-DLEVELDB_BUILD_TESTS=OFF', '-DLEVELDB_BUILD_BENCHMARKS=OFF']),
  };
}
