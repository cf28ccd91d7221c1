/**
 * The certificate a scheduler or worker serves HTTPS with: the operator's (`[tls] cert_file` and
 * `key_file`), or one generated at the first start and kept in the server's state dir (key 0600)
 * so that a restart keeps the fingerprint clients and workers pinned.
 */
import { createPrivateKey, X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ObjectSchema } from '@kiln/plugins';
import { KILN_ERR_TLS_CERT } from '../../errors.js';
import { relativeTo } from '../secrets.js';
import { type Fingerprint, fingerprintOf } from './pinned-agent.js';
import { generateSelfSigned } from './self-signed.js';

/** The `[tls]` table of scheduler.toml and worker.toml. */
export interface ServerTlsConfig {
  /** PEM certificate (chain), leaf first. */
  readonly cert_file?: string;
  /** PEM private key of that certificate. */
  readonly key_file?: string;
}

/**
 * The `[tls]` table of `configFile` with its paths made absolute, or undefined when it names no
 * file (the validator fills an absent table in as {}).
 */
export function serverTlsFiles(
  configFile: string,
  raw: ServerTlsConfig | undefined,
): ServerTlsConfig | undefined {
  if (!raw?.cert_file && !raw?.key_file) return undefined;
  return {
    ...(raw.cert_file ? { cert_file: relativeTo(configFile, raw.cert_file) } : {}),
    ...(raw.key_file ? { key_file: relativeTo(configFile, raw.key_file) } : {}),
  };
}

export const serverTlsSchema: ObjectSchema = {
  type: 'object',
  properties: { cert_file: { type: 'string' }, key_file: { type: 'string' } },
};

export interface ServerTls {
  readonly cert: string;
  readonly key: string;
  /** Of the leaf certificate: what clients pin. */
  readonly fingerprint: Fingerprint;
  /** Where it came from, for the start-up line. */
  readonly source: string;
}

function readPem(file: string, what: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw KILN_ERR_TLS_CERT(
      file,
      `cannot read the ${what}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
    );
  }
}

function checked(cert: string, key: string, where: string, source: string): ServerTls {
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(cert);
  } catch (err) {
    throw KILN_ERR_TLS_CERT(where, `not a PEM certificate: ${(err as Error).message}`);
  }
  let keyOk: boolean;
  try {
    keyOk = x509.checkPrivateKey(createPrivateKey(key));
  } catch (err) {
    throw KILN_ERR_TLS_CERT(where, `not a PEM private key: ${(err as Error).message}`);
  }
  if (!keyOk) throw KILN_ERR_TLS_CERT(where, 'the key does not belong to the certificate');
  if (Date.parse(x509.validTo) < Date.now())
    throw KILN_ERR_TLS_CERT(where, `the certificate expired on ${x509.validTo}`);
  return { cert, key, fingerprint: fingerprintOf(cert), source };
}

/** Host names and addresses the generated certificate names (informative: clients pin it). */
export function certificateHosts(...hosts: readonly string[]): string[] {
  const names = hosts.map((h) => (h === '0.0.0.0' || h === '::' || h === '' ? os.hostname() : h));
  return [...new Set([...names, 'localhost'])];
}

/**
 * The operator's certificate when `config` names one, else the one in `stateDir` (made now if
 * missing). Throws KILN_ERR_TLS_CERT for unreadable or mismatched files and a key others can read.
 */
export function loadServerTls(
  config: ServerTlsConfig | undefined,
  stateDir: string,
  commonName: string,
  hosts: readonly string[],
): ServerTls {
  if (config?.cert_file || config?.key_file) {
    if (!config.cert_file || !config.key_file)
      throw KILN_ERR_TLS_CERT('[tls]', 'cert_file and key_file go together');
    return checked(
      readPem(config.cert_file, 'certificate'),
      readPem(config.key_file, 'key'),
      config.cert_file,
      config.cert_file,
    );
  }
  const dir = path.join(stateDir, 'tls');
  const certFile = path.join(dir, 'cert.pem');
  const keyFile = path.join(dir, 'key.pem');
  if (fs.existsSync(keyFile)) {
    const mode = fs.statSync(keyFile).mode;
    if (mode & 0o077)
      throw KILN_ERR_TLS_CERT(
        keyFile,
        `the key is readable by others (mode ${(mode & 0o777).toString(8)}): chmod 600 it`,
      );
    return checked(
      readPem(certFile, 'certificate'),
      readPem(keyFile, 'key'),
      certFile,
      `${certFile} (generated)`,
    );
  }
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const made = generateSelfSigned(commonName, hosts);
  // The certificate first: a key without it would be found, and fail, at the next start.
  fs.writeFileSync(certFile, made.cert, { mode: 0o644 });
  fs.writeFileSync(keyFile, made.key, { mode: 0o600, flag: 'wx' });
  return checked(made.cert, made.key, certFile, `${certFile} (generated now)`);
}
