/**
 * Connection limits shared by kiln's servers. Fastify turns Node's own timeouts off by default:
 * a client that sends its headers or body a byte at a time would hold a connection forever.
 */
import type { FastifyServerOptions } from 'fastify';

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
