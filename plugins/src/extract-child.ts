/**
 * The child process of safeExtractInChild: extracts one archive, answers over IPC, exits.
 * Its message: { archive, dest, limits }; its answer: { ok: true } or { error: { code, message, statusCode } }.
 */
import { KilnError } from './errors.js';
import { type ExtractLimits, safeExtract } from './safe-extract.js';

interface Request {
  readonly archive: string;
  readonly dest: string;
  readonly limits: ExtractLimits;
}

process.once('message', (msg: Request) => {
  safeExtract(msg.archive, msg.dest, msg.limits).then(
    () => process.send?.({ ok: true }, () => process.exit(0)),
    (err: Error) => {
      const error =
        err instanceof KilnError
          ? { code: err.code, message: err.message, statusCode: err.statusCode }
          : { message: err.message };
      process.send?.({ error }, () => process.exit(0));
    },
  );
});
