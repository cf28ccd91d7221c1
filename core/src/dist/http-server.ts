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
 * `requestTimeoutMs` bounds the time to receive a whole request, headers and body; the time a
 * handler then takes (a compile) is not counted.
 */
export function serverTimeouts(requestTimeoutMs: number): Partial<FastifyServerOptions> {
  return {
    requestTimeout: requestTimeoutMs,
    keepAliveTimeout: KEEP_ALIVE_MS,
    http: {
      headersTimeout: Math.min(HEADERS_TIMEOUT_MS, requestTimeoutMs),
      connectionsCheckingInterval: CHECK_INTERVAL_MS,
    },
  } as Partial<FastifyServerOptions>;
}
