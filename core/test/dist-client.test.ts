import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { DistConfig } from '../src/dist/client-config.js';
import { DistClient, DistError } from '../src/dist/dist-client.js';

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
});
