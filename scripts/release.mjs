#!/usr/bin/env node
// `npm run release`: one npm package, `kiln-<version>.tgz` in release/, that installs with
// `npm install -g ./kiln-<version>.tgz` (or `--prefix DIR`) without a registry: kiln's own packages
// (@kiln/core, the SDK, the sandboxes and resolvers; they are on no registry) and their production
// dependencies travel inside it as bundled dependencies, at the versions package-lock.json pins.
// npm counts a bundled package's own dependencies as part of the bundle, so they must be in it.
// The install builds the native thin client with the machine's C compiler; without one, `kiln` is
// the Node client. Needs `npm ci && npm run build` first.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const outArg = process.argv.indexOf('--out');
const out = outArg > 0 ? path.resolve(process.argv[outArg + 1]) : path.join(root, 'release');
const stage = path.join(out, 'stage');

/** The packages that go in, with what each needs beyond package.json, README and dist/. */
const PACKAGES = {
  plugins: [],
  core: ['native', 'scripts/build-native.mjs'],
  'sandbox-bwrap': [],
  'sandbox-docker': ['runner'],
  'resolver-icecc': [],
  'resolver-path-override': [],
  'resolver-rustup': [],
};

const rootPkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));
const corePkg = JSON.parse(fs.readFileSync(path.join(root, 'core', 'package.json'), 'utf8'));
const version = corePkg.version;

fs.rmSync(stage, { recursive: true, force: true });
fs.mkdirSync(stage, { recursive: true });
const external = {};
const bundled = [];
for (const [dir, extras] of Object.entries(PACKAGES)) {
  const src = path.join(root, dir);
  const pkg = JSON.parse(fs.readFileSync(path.join(src, 'package.json'), 'utf8'));
  if (!fs.existsSync(path.join(src, 'dist')))
    throw new Error(`${dir}/dist is missing: run npm run build first`);
  const dest = path.join(stage, 'node_modules', ...pkg.name.split('/'));
  fs.mkdirSync(dest, { recursive: true });
  const { private: _private, devDependencies: _dev, scripts: _scripts, ...published } = pkg;
  fs.writeFileSync(path.join(dest, 'package.json'), `${JSON.stringify(published, null, 2)}\n`);
  for (const rel of ['README.md', 'dist', ...extras]) {
    const from = path.join(src, rel);
    if (!fs.existsSync(from)) continue;
    fs.cpSync(from, path.join(dest, rel), {
      recursive: true,
      filter: (f) => !f.endsWith('.tsbuildinfo') && !f.endsWith('.js.map'),
    });
  }
  for (const [name, range] of Object.entries(pkg.dependencies ?? {})) {
    if (name.startsWith('@kiln/')) continue;
    external[name] = range;
  }
  bundled.push(pkg.name);
}
fs.copyFileSync(path.join(root, 'LICENSE'), path.join(stage, 'LICENSE'));
fs.copyFileSync(path.join(root, 'README.md'), path.join(stage, 'README.md'));
// systemd units, the container recipe and shell completion travel with it.
fs.cpSync(path.join(root, 'packaging'), path.join(stage, 'packaging'), { recursive: true });

// Until the install builds the native client, `kiln` is the Node client.
const coreDir = path.join(stage, 'node_modules', '@kiln', 'core');
fs.mkdirSync(path.join(coreDir, 'bin'), { recursive: true });
fs.writeFileSync(path.join(coreDir, 'bin', 'kiln'), "#!/usr/bin/env node\nimport '../dist/cli/kiln.js';\n", {
  mode: 0o755,
});
fs.chmodSync(path.join(coreDir, 'dist', 'cli', 'kiln-dist.js'), 0o755);

const manifest = {
  name: 'kiln',
  version,
  description: rootPkg.description,
  license: rootPkg.license,
  type: 'module',
  engines: rootPkg.engines,
  bin: {
    kiln: 'node_modules/@kiln/core/bin/kiln',
    'kiln-dist': 'node_modules/@kiln/core/dist/cli/kiln-dist.js',
  },
  scripts: { postinstall: 'node node_modules/@kiln/core/scripts/build-native.mjs' },
  dependencies: Object.fromEntries([
    ...bundled.map((name) => [name, version]),
    ...Object.entries(external).sort(),
  ]),
  bundleDependencies: bundled,
};

// The third-party packages: exactly the versions package-lock.json put in this clone's
// node_modules (by `npm ci`), the production ones only, in the same layout.
const listed = spawnSync(
  'npm',
  ['ls', '--all', '--omit=dev', '--parseable', ...Object.keys(PACKAGES).map((w) => `--workspace=${w}`)],
  { cwd: root, encoding: 'utf8', maxBuffer: 1 << 26 },
);
if (listed.status !== 0) throw new Error(`npm ls failed (run npm ci first):\n${listed.stderr}`);
const modules = path.join(root, 'node_modules');
for (const dir of new Set(listed.stdout.split('\n').filter(Boolean))) {
  const rel = path.relative(modules, dir);
  if (rel.startsWith('..') || rel.startsWith('@kiln/') || rel === '') continue;
  const dest = path.join(stage, 'node_modules', rel);
  // The package without its own node_modules: nested dependencies are listed on their own.
  fs.cpSync(dir, dest, {
    recursive: true,
    filter: (f) => !path.relative(dir, f).split(path.sep).includes('node_modules'),
  });
}
manifest.bundleDependencies = fs
  .readdirSync(path.join(stage, 'node_modules'))
  .filter((n) => !n.startsWith('.'))
  .flatMap((n) =>
    n.startsWith('@') ? fs.readdirSync(path.join(stage, 'node_modules', n)).map((m) => `${n}/${m}`) : [n],
  )
  .sort();
fs.writeFileSync(path.join(stage, 'package.json'), `${JSON.stringify(manifest, null, 2)}\n`);

const packed = spawnSync('npm', ['pack', '--pack-destination', out, '--json'], {
  cwd: stage,
  encoding: 'utf8',
  // --json lists every file.
  maxBuffer: 1 << 28,
});
if (packed.status !== 0) throw new Error(`npm pack failed:\n${packed.stderr}`);
const [info] = JSON.parse(packed.stdout);
fs.rmSync(stage, { recursive: true, force: true });
console.log(
  `kiln: ${path.relative(process.cwd(), path.join(out, info.filename))} (${info.entryCount} files, ${(info.size / 1024 / 1024).toFixed(1)} MB)`,
);
console.log(`      install: npm install -g ${path.join(out, info.filename)}   (or --prefix DIR)`);
