// Rust and CUDA rows for `npm run bench`.
//  - cargo: a real project (serde with derive, serde_json, regex: 13+ crates with build scripts and
//    proc-macros) built offline from Debian's crate sources (/usr/share/cargo/registry, from the
//    librust-*-dev packages), `cargo build` from an empty cache (cold) and again after `cargo clean`
//    (warm), plain cargo vs RUSTC_WRAPPER=kiln vs RUSTC_WRAPPER=sccache. Cargo's defaults (dev
//    profile: the project's own crate is incremental, so no cache stores it).
//  - nvcc: one .cu file compiled cold (empty cache) and warm (a hit), plain vs kiln/ccache/sccache.
import fs from 'node:fs';
import path from 'node:path';
import { median, timed } from './util.mjs';

const REGISTRY = '/usr/share/cargo/registry';
const CRATES = ['serde-1', 'serde_derive-1', 'serde_json-1', 'regex-1'];

export function cargoPrerequisites() {
  const have = fs.existsSync(REGISTRY) ? fs.readdirSync(REGISTRY) : [];
  const missing = CRATES.filter((c) => !have.some((d) => d.startsWith(c.replace(/-1$/, '-1.'))));
  return missing.length
    ? `missing crates ${missing.join(', ')} (apt-get install librust-serde-derive-dev librust-serde-json-dev librust-regex-dev)`
    : undefined;
}

export function writeCargoProject(dir, registry = REGISTRY) {
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(path.join(dir, 'src'), { recursive: true });
  fs.mkdirSync(path.join(dir, '.cargo'));
  fs.writeFileSync(
    path.join(dir, 'Cargo.toml'),
    '[package]\nname = "benchapp"\nversion = "0.1.0"\nedition = "2021"\n\n[dependencies]\n' +
      'serde = { version = "1", features = ["derive"] }\nserde_json = "1"\nregex = "1"\n',
  );
  fs.writeFileSync(
    path.join(dir, '.cargo', 'config.toml'),
    `[source.crates-io]\nreplace-with = "debian"\n[source.debian]\ndirectory = "${registry}"\n[net]\noffline = true\n`,
  );
  fs.writeFileSync(
    path.join(dir, 'src', 'main.rs'),
    'use serde::Serialize;\n#[derive(Serialize)]\nstruct P { x: i32 }\n' +
      'fn main() { let r = regex::Regex::new("a+").unwrap(); println!("{} {}", serde_json::to_string(&P { x: 1 }).unwrap(), r.is_match("aa")); }\n',
  );
}

/**
 * { cold: {tool: s}, warm: {tool: s} } for plain, kiln and sccache. The tools take turns within
 * each run, so a machine that gets slower or faster over the minutes affects them alike.
 */
export function benchCargo({ runs, work, tools }) {
  const chosen = tools.filter((t) => ['plain', 'kiln', 'sccache'].includes(t.name));
  const setups = chosen.map((tool) => {
    const dir = path.join(work, 'build', `cargo-${tool.name}`);
    writeCargoProject(dir);
    const env = {
      ...tool.env,
      CARGO_HOME: path.join(work, 'cargo-home'),
      CARGO_TERM_COLOR: 'never',
      ...(tool.wrapper && { RUSTC_WRAPPER: tool.wrapper }),
    };
    return { tool, dir, env, cold: [], warm: [] };
  });
  for (let i = 0; i < runs; i++) {
    for (const s of setups) {
      const build = () => timed('cargo', ['build'], { cwd: s.dir, env: s.env });
      s.tool.clear();
      timed('cargo', ['clean'], { cwd: s.dir, env: s.env });
      s.cold.push(build());
      timed('cargo', ['clean'], { cwd: s.dir, env: s.env });
      s.warm.push(s.tool.wrapper ? build() : s.cold.at(-1));
      process.stderr.write(
        `  cargo ${s.tool.name} run ${i + 1}: cold ${s.cold.at(-1).toFixed(2)} s, warm ${s.warm.at(-1).toFixed(2)} s\n`,
      );
    }
  }
  const rows = { cold: {}, warm: {} };
  for (const s of setups) {
    rows.cold[s.tool.name] = median(s.cold);
    rows.warm[s.tool.name] = median(s.warm);
  }
  return rows;
}

/** { cold: {tool: s}, warm: {tool: s} } for one .cu file. */
export function benchCuda({ runs, work, tools }) {
  const dir = path.join(work, 'cuda');
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(
    path.join(dir, 'saxpy.cu'),
    '#include <cstdio>\n#include <vector>\n' +
      '__global__ void saxpy(int n, float a, const float *x, float *y) {\n' +
      '  int i = blockIdx.x * blockDim.x + threadIdx.x; if (i < n) y[i] = a * x[i] + y[i];\n}\n' +
      'int run(int n) { std::vector<float> h(n, 1.0f); float *x, *y;\n' +
      '  cudaMalloc(&x, n * sizeof(float)); cudaMalloc(&y, n * sizeof(float));\n' +
      '  cudaMemcpy(x, h.data(), n * sizeof(float), cudaMemcpyHostToDevice);\n' +
      '  saxpy<<<(n + 255) / 256, 256>>>(n, 2.0f, x, y); cudaDeviceSynchronize();\n' +
      '  cudaFree(x); cudaFree(y); return 0; }\n',
  );
  const old = new Date(Date.now() - 60_000);
  fs.utimesSync(path.join(dir, 'saxpy.cu'), old, old);
  const rows = { cold: {}, warm: {} };
  for (const tool of tools.filter((t) => t.name !== 'kiln-node')) {
    const cmd = [...(tool.wrapper ? [tool.wrapper] : []), 'nvcc', '-O2', '-c', 'saxpy.cu', '-o', 'saxpy.o'];
    const compile = () => timed(cmd[0], cmd.slice(1), { cwd: dir, env: tool.env });
    const cold = [];
    const warm = [];
    for (let i = 0; i < runs; i++) {
      tool.clear();
      cold.push(compile());
      if (tool.wrapper) {
        compile(); // ccache's direct mode settles on the second call
        warm.push(compile());
      } else warm.push(cold.at(-1));
    }
    rows.cold[tool.name] = median(cold);
    rows.warm[tool.name] = median(warm);
    process.stderr.write(
      `  nvcc ${tool.name}: cold ${rows.cold[tool.name].toFixed(2)} s, warm ${rows.warm[tool.name].toFixed(3)} s\n`,
    );
  }
  return rows;
}
