/**
 * HTTPS to a server whose certificate is pinned by its SHA-256 fingerprint: the scheduler's
 * (`scheduler_cert_sha256`, which the operator copies from `kiln-dist tls fingerprint`) and every
 * worker's (reported in its heartbeat over the pinned connection to the scheduler, handed to the
 * client with each allocation). The pin replaces CA and host name checks: only the holder of the
 * key of that very certificate completes the handshake. The socket reaches the request only after
 * the check, so not one byte (no token) is sent to a server that fails it.
 */
import { X509Certificate } from 'node:crypto';
import https from 'node:https';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import { KILN_ERR_CONFIG_INVALID } from '../../errors.js';

/** "AB:CD:…" (what Node's fingerprint256 and `openssl x509 -fingerprint -sha256` print). */
export type Fingerprint = string;

/** Upper-case hex with colons; undefined when `text` is not 32 bytes of hex (colons optional). */
export function normalizeFingerprint(text: string): Fingerprint | undefined {
  const hex = text
    .trim()
    .replace(/^sha256[:=]/i, '')
    .replace(/:/g, '')
    .toUpperCase();
  if (!/^[0-9A-F]{64}$/.test(hex)) return undefined;
  return hex.match(/../g)!.join(':');
}

/** A `scheduler_cert_sha256` setting: undefined when absent, a config error when malformed. */
export function pinSetting(value: string | undefined, key: string, where: string): Fingerprint | undefined {
  if (value === undefined) return undefined;
  const pin = normalizeFingerprint(value);
  if (!pin) throw KILN_ERR_CONFIG_INVALID(key, where, 'a SHA-256 fingerprint: 32 hex bytes, colons optional');
  return pin;
}

/** The SHA-256 fingerprint of the first certificate in a PEM text. */
export function fingerprintOf(pem: string): Fingerprint {
  return new X509Certificate(pem).fingerprint256;
}

export class CertificateMismatch extends Error {
  readonly code = 'KILN_CERT_PIN_MISMATCH';
}

export class PinnedAgent extends https.Agent {
  constructor(
    readonly pin: Fingerprint,
    options: https.AgentOptions,
  ) {
    // No TLS session reuse: every connection shows its certificate again.
    super({ ...options, maxCachedSessions: 0 });
  }

  override createConnection(
    options: https.RequestOptions,
    callback?: (err: Error | null, stream: Duplex) => void,
  ): Duplex | null | undefined {
    const socket = tls.connect({ ...(options as tls.ConnectionOptions), rejectUnauthorized: false });
    const fail = (err: Error) => callback?.(err, socket);
    socket.once('error', fail);
    socket.once('secureConnect', () => {
      socket.off('error', fail);
      const got = socket.getPeerCertificate().fingerprint256;
      if (got !== this.pin) {
        socket.destroy();
        fail(
          new CertificateMismatch(
            `the certificate of ${options.host}:${options.port} has SHA-256 ${got || '(none)'}, not the pinned ${this.pin}`,
          ),
        );
        return;
      }
      callback?.(null, socket);
    });
    return undefined;
  }
}
