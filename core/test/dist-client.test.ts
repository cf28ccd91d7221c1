import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { DistConfig } from '../src/cluster/client-config.js';
import { DistClient, DistError } from '../src/cluster/dist-client.js';

const TOOLCHAIN = { kind: 'archive', digest: 'c'.repeat(64), hostTriples: ['x86_64-unknown-linux-gnu'] };
const servers: http.Server[] = [];

function config(url: string): DistConfig {
  return {
    scheduler_url: url,
    auth: { type: 'token', token: 't' },
    // A plain-http stand-in: these tests are about connections, not TLS (test/security/tls.test.ts).
    insecure: true,
    scheduler_cert_sha256: undefined,
    scheduler_ca: undefined,
    force_remote_build: false,
    toolchain_cache_size: 1e9,
    job_timeout: 5,
    connect_timeout: 2,
  };
}

/** A scheduler stand-in; `handle` gets each request with the number of requests its connection carried before. */
async function serve(handle: (req: http.IncomingMessage, res: http.ServerResponse, earlier: number) => void) {
  const seen = new WeakMap<Socket, number>();
  const server = http.createServer((req, res) => {
    const earlier = seen.get(req.socket) ?? 0;
    seen.set(req.socket, earlier + 1);
    handle(req, res, earlier);
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});

describe('DistClient', () => {
  it('sends a request again when the kept-alive connection it went out on was closed under it', async () => {
    let requests = 0;
    const url = await serve((req, res, earlier) => {
      requests++;
      // The second request on a connection finds it closed, as after a server's idle timeout.
      if (earlier === 1) return req.socket.destroy();
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ status: 'no_capacity', reason: 'test' }));
    });
    const client = new DistClient(config(url));
    try {
      expect((await client.allocate(TOOLCHAIN)).status).toBe('no_capacity');
      expect((await client.allocate(TOOLCHAIN)).status).toBe('no_capacity');
      expect(requests).toBe(3);
    } finally {
      await client.close();
    }
  });

  it('says why the scheduler refused the client token in words, not its JSON answer', async () => {
    const url = await serve((_req, res) => {
      res.statusCode = 401;
      res.setHeader('content-type', 'application/json');
      res.end(
        JSON.stringify({ code: 'KILN_ERR_AUTH_REQUIRED', message: 'client: missing or invalid credentials' }),
      );
    });
    const client = new DistClient(config(url));
    try {
      const err = (await client.status().catch((e: unknown) => e)) as DistError;
      expect(err.message).toBe(
        "scheduler refused credentials: 401: client: missing or invalid credentials; check the client token ([dist.auth] token or token_file, or KILN_DIST_CLIENT_TOKEN) against the scheduler's [client_auth]",
      );
    } finally {
      await client.close();
    }
  });

  it('reports an unreachable scheduler, refused credentials and a timeout as DistErrors', async () => {
    const refused = new DistClient(config('http://127.0.0.1:1'));
    await expect(refused.allocate(TOOLCHAIN)).rejects.toMatchObject({ reason: 'scheduler unreachable' });
    const url = await serve((req, res) => {
      if (req.url?.endsWith('/status')) return; // never answers
      res.statusCode = 401;
      res.end('no');
    });
    const client = new DistClient(config(url));
    try {
      await expect(client.allocate(TOOLCHAIN)).rejects.toMatchObject({
        reason: 'scheduler refused credentials',
      });
      const err = await client.status().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(DistError);
      expect((err as DistError).reason).toBe('scheduler unreachable');
      expect((err as DistError).message).toMatch(/timeout|aborted/i);
    } finally {
      await client.close();
    }
  });

  it('sends exclude only when there is one, its name until refused, and keeps the status of a refusal', async () => {
    const bodies: unknown[] = [];
    const url = await serve((req, res) => {
      let text = '';
      req.on('data', (c) => (text += c));
      req.on('end', () => {
        const body = JSON.parse(text) as { exclude?: string[]; client?: string };
        bodies.push(body);
        // What a scheduler without `exclude` and `client` (additionalProperties: false) answers.
        res.statusCode = body.exclude || body.client ? 400 : 200;
        res.end(JSON.stringify({ status: 'no_capacity', reason: 'test' }));
      });
    });
    const client = new DistClient({ ...config(url), client_name: 'ci-1' });
    try {
      expect((await client.allocate(TOOLCHAIN)).status).toBe('no_capacity');
      expect((await client.allocate(TOOLCHAIN)).status).toBe('no_capacity');
      const err = await client.allocate(TOOLCHAIN, ['w1']).catch((e: DistError) => e);
      expect([err instanceof DistError, (err as DistError).reason, (err as DistError).status]).toEqual([
        true,
        'scheduler error',
        400,
      ]);
      expect(bodies).toEqual([
        { toolchain: TOOLCHAIN, client: 'ci-1' },
        { toolchain: TOOLCHAIN },
        { toolchain: TOOLCHAIN },
        { toolchain: TOOLCHAIN, exclude: ['w1'] },
      ]);
    } finally {
      await client.close();
    }
  });

  it('tells a lost worker (cut connection, refused, 5xx) from a job that would fail anywhere', async () => {
    const header = {
      toolchain: { kind: 'archive', digest: 'c'.repeat(64), compiler: '/usr/bin/gcc' },
      cwd: '/src',
      argv: ['/usr/bin/gcc'],
      env: {},
      inputs: [],
      outputs: [],
      timeoutMs: 1000,
    };
    const answers: Record<string, (res: http.ServerResponse) => void> = {
      cut: (res) => res.socket?.destroy(),
      busy: (res) => {
        res.statusCode = 503;
        res.end(JSON.stringify({ code: 'KILN_ERR_WORKER_BUSY' }));
      },
      sandbox: (res) => {
        res.statusCode = 500;
        res.end(JSON.stringify({ code: 'KILN_ERR_SANDBOX_FAILED' }));
      },
      invalid: (res) => {
        res.statusCode = 400;
        res.end(JSON.stringify({ code: 'KILN_ERR_SANDBOX_JOB_INVALID' }));
      },
      slow: () => {},
    };
    const url = await serve((req, res) => {
      req.resume();
      req.on('end', () => answers[/jobs\/(\w+)\//.exec(req.url ?? '')![1]!]!(res));
    });
    const client = new DistClient({ ...config(url), job_timeout: 0.1 });
    const run = (job: string) => client.run(url, 't', job, header, []).catch((e: DistError) => e);
    try {
      const facts = async (job: string) => {
        const e = await run(job);
        return e instanceof DistError ? [e.reason, e.workerLost, e.status] : e;
      };
      expect(await facts('cut')).toEqual(['worker unreachable', true, undefined]);
      expect(await facts('busy')).toEqual(['worker error', true, 503]);
      expect(await facts('sandbox')).toEqual(['sandbox failure', false, 500]);
      expect(await facts('invalid')).toEqual(['sandbox failure', false, 400]);
      // job_timeout + 5 s passed without an answer: the worker is alive but slow, or the job is.
      expect(await facts('slow')).toEqual(['worker unreachable', false, undefined]);
      const refused = new DistClient(config('http://127.0.0.1:1'));
      const gone = await refused.run('http://127.0.0.1:1', 't', 'x', header, []).catch((e: DistError) => e);
      expect([gone.reason, (gone as DistError).workerLost]).toEqual(['worker unreachable', true]);
    } finally {
      await client.close();
    }
  }, 20_000);
});
