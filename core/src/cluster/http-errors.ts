import type { FastifyError, FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { KilnError } from '../errors.js';

const CLIENT_GONE = new Set(['ECONNRESET', 'EPIPE', 'ERR_STREAM_PREMATURE_CLOSE']);

/**
 * One error shape for every kiln server: `{ code, message }` with the right status. Caller
 * mistakes (bad JSON, schema, content type, size) are 4xx with one info line; nothing a client
 * sends takes a server down.
 */
export const errorReplies = fp(
  async (app: FastifyInstance) => {
    app.setErrorHandler((err: FastifyError | KilnError, request, reply) => {
      // A refused request's body is not read: the connection closes instead of swallowing it.
      if (!request.raw.complete) reply.header('connection', 'close');
      if (err instanceof KilnError) {
        if (err.statusCode >= 500) request.log.error(err.message);
        else request.log.info(`${request.method} ${request.url}: ${err.statusCode} ${err.message}`);
        return reply.code(err.statusCode).send({ code: err.code, message: err.message });
      }
      const fe = err as FastifyError;
      // The client went away in the middle of its body: its mistake, and nobody reads the answer.
      if (CLIENT_GONE.has(fe.code) || fe.message === 'aborted') {
        request.log.info(`${request.method} ${request.url}: the client went away (${fe.code ?? fe.message})`);
        return reply
          .code(400)
          .send({ code: 'KILN_ERR_DIST_BAD_REQUEST', message: 'the request was cut off' });
      }
      if (fe.validation) {
        request.log.info(`${request.method} ${request.url}: 400 ${fe.message}`);
        return reply
          .code(400)
          .send({ code: 'KILN_ERR_DIST_BAD_REQUEST', message: `bad request: ${fe.message}` });
      }
      const status = fe.statusCode && fe.statusCode >= 400 && fe.statusCode < 600 ? fe.statusCode : 500;
      if (status >= 500) request.log.error(fe);
      else request.log.info(`${request.method} ${request.url}: ${status} ${fe.message}`);
      return reply.code(status).send({
        code: status < 500 ? (fe.code ?? 'KILN_ERR_DIST_BAD_REQUEST') : 'KILN_ERR_INTERNAL',
        message: status < 500 ? fe.message : 'internal error',
      });
    });
    app.setNotFoundHandler((request, reply) => {
      if (!request.raw.complete) reply.header('connection', 'close');
      return reply
        .code(404)
        .send({ code: 'KILN_ERR_DIST_NOT_FOUND', message: `${request.method} ${request.url} not found` });
    });
  },
  { name: 'kiln-error-replies' },
);
