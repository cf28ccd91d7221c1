/**
 * A self-signed X.509 certificate for a scheduler or worker without an operator certificate
 * (sccache-dist's scheme): an ECDSA P-256 key and a DER certificate built here with node:crypto.
 * Clients never check it against a CA: they pin its SHA-256 fingerprint (./pinned-agent.ts), so
 * it only has to be well-formed. Written by hand rather than with a library (`selfsigned` pulls
 * node-forge, `@peculiar/x509` a WebCrypto shim and reflect polyfills) because DER for one fixed
 * certificate shape is ~80 lines, and Node parses what we make (tested) and TLS proves it.
 */
import { createPrivateKey, generateKeyPairSync, randomBytes, sign, X509Certificate } from 'node:crypto';
import { isIP } from 'node:net';

const der = (tag: number, content: Buffer): Buffer => {
  const n = content.length;
  let len: Buffer;
  if (n < 0x80) len = Buffer.from([n]);
  else {
    const bytes: number[] = [];
    for (let v = n; v > 0; v >>>= 8) bytes.unshift(v & 0xff);
    len = Buffer.from([0x80 | bytes.length, ...bytes]);
  }
  return Buffer.concat([Buffer.from([tag]), len, content]);
};
const seq = (...items: Buffer[]) => der(0x30, Buffer.concat(items));

function oid(text: string): Buffer {
  const [a, b, ...rest] = text.split('.').map(Number) as [number, number, ...number[]];
  const bytes = [40 * a + b];
  for (const v of rest) {
    const chunk = [v & 0x7f];
    for (let x = v >>> 7; x > 0; x >>>= 7) chunk.unshift(0x80 | (x & 0x7f));
    bytes.push(...chunk);
  }
  return der(0x06, Buffer.from(bytes));
}

function time(d: Date): Buffer {
  const iso = d.toISOString().replace(/[-:T]/g, '').slice(0, 14);
  // RFC 5280: UTCTime through 2049, GeneralizedTime from 2050.
  return d.getUTCFullYear() < 2050
    ? der(0x17, Buffer.from(`${iso.slice(2)}Z`))
    : der(0x18, Buffer.from(`${iso}Z`));
}

const name = (cn: string) => seq(der(0x31, seq(oid('2.5.4.3'), der(0x0c, Buffer.from(cn)))));

function ipBytes(ip: string): Buffer {
  if (isIP(ip) === 4) return Buffer.from(ip.split('.').map(Number));
  // IPv6: expand "::" then 8 groups of 16 bits.
  const [head, tail] = ip.split('::') as [string, string | undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  return Buffer.concat(groups.map((g) => Buffer.from(g.padStart(4, '0'), 'hex')));
}

function subjectAltName(hosts: readonly string[]): Buffer {
  const names = hosts.map((h) => (isIP(h) ? der(0x87, ipBytes(h)) : der(0x82, Buffer.from(h))));
  return seq(oid('2.5.29.17'), der(0x04, seq(...names)));
}

export interface GeneratedCertificate {
  readonly cert: string;
  readonly key: string;
}

/** A fresh key and a certificate for `hosts` (names or IPs), valid for `days` from now. */
export function generateSelfSigned(
  commonName: string,
  hosts: readonly string[],
  days = 3650,
): GeneratedCertificate {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const serial = randomBytes(16);
  serial[0] = (serial[0]! & 0x7f) | 0x01;
  const ecdsaSha256 = seq(oid('1.2.840.10045.4.3.2'));
  const now = Date.now();
  const tbs = seq(
    der(0xa0, der(0x02, Buffer.from([2]))),
    der(0x02, serial),
    ecdsaSha256,
    name(commonName),
    seq(time(new Date(now - 60_000)), time(new Date(now + days * 86_400_000))),
    name(commonName),
    publicKey.export({ type: 'spki', format: 'der' }),
    der(
      0xa3,
      seq(
        // basicConstraints, critical: not a CA.
        seq(oid('2.5.29.19'), der(0x01, Buffer.from([0xff])), der(0x04, seq())),
        subjectAltName(hosts.length ? hosts : ['localhost']),
      ),
    ),
  );
  const signature = sign('sha256', tbs, privateKey);
  const certDer = seq(tbs, ecdsaSha256, der(0x03, Buffer.concat([Buffer.from([0]), signature])));
  const cert = new X509Certificate(certDer).toString();
  const key = createPrivateKey(privateKey.export({ type: 'pkcs8', format: 'pem' })).export({
    type: 'pkcs8',
    format: 'pem',
  }) as string;
  return { cert, key };
}
