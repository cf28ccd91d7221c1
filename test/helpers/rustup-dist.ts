/**
 * A real rustup distribution tree built from an installed toolchain, served on 127.0.0.1, so that
 * `rustup toolchain install` runs for real without the internet (RUSTUP_DIST_SERVER). It holds
 * what the `minimal` profile needs for the host — rustc, rust-std and cargo — as rust-installer
 * tarballs made from the files the toolchain's own `lib/rustlib/manifest-<component>` lists, and a
 * channel manifest (`dist/channel-rust-<release>.toml` and its `.sha256`) naming them with their
 * sha256, as static.rust-lang.org does.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';

export interface RustupDist {
  readonly url: string;
  readonly release: string;
  /** Files served, by URL path. */
  readonly served: string[];
  close(): Promise<void>;
}

const sha256 = (file: string) => createHash('sha256').update(fs.readFileSync(file)).digest('hex');

/**
 * Builds the tree under `dir` from the toolchain at `sysroot` and serves it, as the channel of its
 * own release, or of `releaseAs` (a server that hands out another build than the one asked for).
 */
export async function serveRustupDist(sysroot: string, dir: string, releaseAs?: string): Promise<RustupDist> {
  const vV = execFileSync(path.join(sysroot, 'bin', 'rustc'), ['-vV'], { encoding: 'utf8' });
  const field = (n: string) => new RegExp(`^${n}: (\\S+)$`, 'm').exec(vV)![1]!;
  const [host, commitDate] = [field('host'), field('commit-date')];
  const release = releaseAs ?? field('release');
  const version = /^rustc (.*)$/m.exec(vV)![1]!;
  const date = commitDate;
  const server = http.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const distDir = path.join(dir, 'dist', date);
  fs.mkdirSync(distDir, { recursive: true });

  /** One rust-installer tarball: `<name>/{rust-installer-version,components,<component>/…}`. */
  const tarball = (pkg: string, component: string) => {
    const name = `${pkg}-${release}-${host}`;
    const stage = path.join(dir, 'stage', name);
    const listed = fs
      .readFileSync(path.join(sysroot, 'lib', 'rustlib', `manifest-${pkg}-${host}`), 'utf8')
      .split('\n')
      .filter(Boolean);
    fs.mkdirSync(path.join(stage, component), { recursive: true });
    fs.writeFileSync(path.join(stage, 'rust-installer-version'), '3\n');
    fs.writeFileSync(path.join(stage, 'components'), `${component}\n`);
    fs.writeFileSync(path.join(stage, component, 'manifest.in'), `${listed.join('\n')}\n`);
    for (const line of listed) {
      const rel = line.replace(/^(file|dir):/, '');
      const from = path.join(sysroot, rel);
      const to = path.join(stage, component, rel);
      fs.mkdirSync(path.dirname(to), { recursive: true });
      if (line.startsWith('dir:')) fs.cpSync(from, to, { recursive: true });
      else fs.linkSync(from, to);
    }
    const file = path.join(distDir, `${name}.tar.gz`);
    execFileSync('sh', ['-c', `tar -C "${path.dirname(stage)}" -cf - "${name}" | gzip -1 > "${file}"`]);
    fs.rmSync(stage, { recursive: true });
    return { url: `${url}/dist/${date}/${name}.tar.gz`, hash: sha256(file) };
  };

  const parts = [
    ['rustc', 'rustc'],
    ['rust-std', `rust-std-${host}`],
    ['cargo', 'cargo'],
  ] as const;
  const lines = ['manifest-version = "2"', `date = "${date}"`, ''];
  for (const [pkg, component] of parts) {
    const t = tarball(pkg, component);
    lines.push(
      `[pkg.${pkg}]`,
      `version = "${
        pkg === 'cargo'
          ? execFileSync(path.join(sysroot, 'bin', 'cargo'), ['-V'], { encoding: 'utf8' })
              .trim()
              .replace(/^cargo /, '')
          : version
      }"`,
      '',
      `[pkg.${pkg}.target.${host}]`,
      'available = true',
      `url = "${t.url}"`,
      `hash = "${t.hash}"`,
      'components = []',
      'extensions = []',
      '',
    );
  }
  lines.push(`[pkg.rust]`, `version = "${version}"`, '', `[pkg.rust.target.${host}]`, 'available = true', '');
  for (const [pkg] of parts)
    lines.push(`[[pkg.rust.target.${host}.components]]`, `pkg = "${pkg}"`, `target = "${host}"`, '');
  lines.push('[profiles]', 'minimal = ["rustc", "cargo", "rust-std"]', '', '[renames]', '');
  const manifest = path.join(dir, 'dist', `channel-rust-${release}.toml`);
  fs.writeFileSync(manifest, lines.join('\n'));
  fs.writeFileSync(`${manifest}.sha256`, `${sha256(manifest)}  channel-rust-${release}.toml\n`);

  const served: string[] = [];
  server.on('request', (req, res) => {
    const rel = decodeURIComponent(new URL(req.url ?? '/', url).pathname);
    served.push(rel);
    const file = path.join(dir, path.normalize(rel));
    if (!file.startsWith(`${dir}/dist/`) || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-length': fs.statSync(file).size });
    fs.createReadStream(file).pipe(res);
  });
  return {
    url,
    release,
    served,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
