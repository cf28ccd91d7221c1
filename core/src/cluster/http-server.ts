/**
 * Connection limits shared by kiln's servers. Fastify turns Node's own timeouts off by default:
 * a client that sends its headers or body a byte at a time would hold a connection forever.
 */
import type { FastifyServerOptions } from 'fastify';
import { KILN_ERR_DIST_LISTEN } from '../errors.js';

/** Node checks request and header deadlines on this interval (30 s by default). */
const CHECK_INTERVAL_MS = 1000;
const HEADERS_TIMEOUT_MS = 10_000;
/** An idle kept-alive connection is closed after this long. */
const KEEP_ALIVE_MS = 30_000;

/**
 * Fastify options for a kiln server: HTTPS with `tls`, else plain HTTP. `requestTimeoutMs` bounds
 * the time to receive a whole request, headers and body; the time a handler then takes (a compile)
 * is not counted. Node reads the header deadline and the checking interval only from the options
 * its server is created with: fastify passes `http` to an HTTP server and `https` to an HTTPS one,
 * so they go in whichever is used.
 */
export function serverOptions(
  requestTimeoutMs: number,
  tls: { readonly cert: string; readonly key: string } | undefined,
): Partial<FastifyServerOptions> {
  const deadlines = {
    headersTimeout: Math.min(HEADERS_TIMEOUT_MS, requestTimeoutMs),
    requestTimeout: requestTimeoutMs,
    connectionsCheckingInterval: CHECK_INTERVAL_MS,
  };
  return {
    requestTimeout: requestTimeoutMs,
    keepAliveTimeout: KEEP_ALIVE_MS,
    ...(tls ? { https: { cert: tls.cert, key: tls.key, ...deadlines } } : { http: deadlines }),
  } as Partial<FastifyServerOptions>;
}

/** What to do about a listen error, by its errno code. */
const LISTEN_ADVICE: Readonly<Record<string, string>> = {
  EADDRINUSE:
    'another program (or another kiln-dist) is using that port; stop it, or set public_addr to a free port',
  EACCES: 'ports below 1024 need root (or CAP_NET_BIND_SERVICE); set public_addr to a port above 1023',
  EADDRNOTAVAIL:
    'no network interface of this machine has that address; set public_addr to one of its addresses, or 0.0.0.0',
};

export interface Listening {
  /** Fastify's URL for the server: 127.0.0.1 when it listens on every interface. */
  readonly url: string;
  /** The address it is bound to, as the OS says: 0.0.0.0 stays 0.0.0.0, port 0 is the real port. */
  readonly bound: string;
}

/**
 * Listens like `app.listen`; an address in use (or not ours, or privileged) is a one-line error
 * that names the address and what to do, not a stack trace.
 */
export async function listenOn(
  app: { listen(opts: { host: string; port: number }): Promise<string>; server: { address(): unknown } },
  what: string,
  host: string,
  port: number,
): Promise<Listening> {
  try {
    const url = await app.listen({ host, port });
    const a = app.server.address() as { address: string; family: string; port: number } | null;
    if (!a || typeof a !== 'object') return { url, bound: url };
    const h = a.family === 'IPv6' ? `[${a.address}]` : a.address;
    return { url, bound: `${new URL(url).protocol}//${h}:${a.port}` };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? '';
    const advice = LISTEN_ADVICE[code];
    if (!advice) throw err;
    const addr = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
    throw KILN_ERR_DIST_LISTEN(what, addr, `${code === 'EADDRINUSE' ? 'address in use' : code}: ${advice}`);
  }
}
