/**
 * A real nginx with its WebDAV module (Debian's nginx) on 127.0.0.1, serving a temp dir:
 *   /cache/   PUT/DELETE with create_full_put_path (how ccache's docs set nginx up)
 *   /plain/   PUT/DELETE/MKCOL without it: a client must make the collections itself
 *   /basic/   as /cache/, behind HTTP basic auth (user "kiln", password "s3cret")
 *   /bearer/  as /cache/, only with "Authorization: Bearer tok3n"
 * One process (master_process off), stopped or killed by the test.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { freePort, waitForPort } from './free-port.js';

export interface Nginx {
  readonly port: number;
  /** The directory nginx serves: entries appear under it as files. */
  readonly root: string;
  url(location: 'cache' | 'plain' | 'basic' | 'bearer'): string;
  /** Every file stored under a location, relative to it. */
  files(location: 'cache' | 'plain' | 'basic' | 'bearer'): string[];
  kill(): void;
  stop(): Promise<void>;
}

function listFiles(dir: string, base = dir): string[] {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const full = path.join(dir, e.name);
    return e.isDirectory() ? listFiles(full, base) : [path.relative(base, full)];
  });
}

export async function startNginx(dir: string): Promise<Nginx> {
  const port = await freePort();
  const root = path.join(dir, 'www');
  for (const loc of ['cache', 'plain', 'basic', 'bearer'])
    fs.mkdirSync(path.join(root, loc), { recursive: true });
  fs.mkdirSync(path.join(dir, 'tmp'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'htpasswd'), 'kiln:{PLAIN}s3cret\n');
  const dav = (extra: string) => `
      dav_methods PUT DELETE MKCOL;
      dav_access user:rw;
      client_max_body_size 64m;
      ${extra}`;
  fs.writeFileSync(
    path.join(dir, 'nginx.conf'),
    `
daemon off;
master_process off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path ${dir}/tmp;
  proxy_temp_path ${dir}/tmp;
  fastcgi_temp_path ${dir}/tmp;
  uwsgi_temp_path ${dir}/tmp;
  scgi_temp_path ${dir}/tmp;
  server {
    listen 127.0.0.1:${port};
    root ${root};
    location /cache/ { ${dav('create_full_put_path on;')} }
    location /plain/ { ${dav('')} }
    location /basic/ { ${dav('create_full_put_path on; auth_basic "kiln"; auth_basic_user_file ' + dir + '/htpasswd;')} }
    location /bearer/ {
      if ($http_authorization != "Bearer tok3n") { return 401; }
      ${dav('create_full_put_path on;')}
    }
  }
}
`,
  );
  const proc: ChildProcess = spawn('nginx', ['-p', dir, '-c', path.join(dir, 'nginx.conf')], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  proc.stderr?.on('data', (c) => (stderr += c));
  try {
    await waitForPort(port);
  } catch (err) {
    proc.kill('SIGKILL');
    throw new Error(`nginx did not start: ${stderr} ${(err as Error).message}`);
  }
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  return {
    port,
    root,
    url: (location) => `http://127.0.0.1:${port}/${location}/`,
    files: (location) => listFiles(path.join(root, location)),
    kill: () => {
      proc.kill('SIGKILL');
    },
    stop: async () => {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGTERM');
        await exited;
      }
    },
  };
}
