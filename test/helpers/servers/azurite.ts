/**
 * Azurite's blob service (Microsoft's Azure Storage emulator) for tests, on 127.0.0.1 with a port
 * the OS picks, data in its own temp directory, telemetry off. It checks SharedKey signatures and SAS tokens
 * against its well-known development account (devstoreaccount1).
 */
import { createHmac } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { packageBin } from '../prereq.js';
import { startChild } from './node-child.js';

export const AZURITE_ACCOUNT = 'devstoreaccount1';
/** The development account's published key (the emulator's documentation), not a secret. */
export const AZURITE_KEY =
  'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';

export interface AzuriteServer {
  /** http://127.0.0.1:PORT/devstoreaccount1: the account URL. */
  readonly accountUrl: string;
  readonly port: number;
  /** A connection string with the account key. */
  readonly connectionString: string;
  stop(): Promise<void>;
  /** SIGKILL at once (a crash), keeping its directory. */
  kill(): Promise<void>;
}

/** Whether azurite is installed; under CI=true its absence throws instead. */
export function haveAzurite(): boolean {
  return packageBin('azurite', 'azurite-blob') !== undefined;
}

export async function startAzurite(port = 0): Promise<AzuriteServer> {
  const bin = packageBin('azurite', 'azurite-blob');
  if (!bin) throw new Error('azurite is not installed (npm ci installs it with @kiln/test)');
  // Its own workspace: the blobs and its database, removed by stop().
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-azurite-'));
  const child = await startChild(
    'azurite-blob',
    [
      bin,
      '--blobHost',
      '127.0.0.1',
      '--blobPort',
      String(port),
      '--location',
      dir,
      '--skipApiVersionCheck',
      '--disableTelemetry',
      '--silent',
    ],
    /successfully listens on http:\/\/127\.0\.0\.1:(\d+)/,
    { cwd: dir },
  );
  const actual = Number(child.ready[1]);
  const accountUrl = `http://127.0.0.1:${actual}/${AZURITE_ACCOUNT}`;
  return {
    accountUrl,
    port: actual,
    connectionString: `DefaultEndpointsProtocol=http;AccountName=${AZURITE_ACCOUNT};AccountKey=${AZURITE_KEY};BlobEndpoint=${accountUrl};`,
    stop: async () => {
      await child.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    },
    kill: () => child.kill(),
  };
}

/**
 * A request to azurite signed with the development account's key: the test's own small SharedKey
 * signer (not kiln's), to make containers and write blobs behind kiln's back.
 */
export async function azuriteRequest(
  server: AzuriteServer,
  method: string,
  pathAndQuery: string,
  body?: Buffer,
  extra: Record<string, string> = {},
): Promise<{ status: number; headers: Headers; body: Buffer }> {
  const url = new URL(`${server.accountUrl}/${pathAndQuery}`);
  const headers: Record<string, string> = {
    ...extra,
    'x-ms-date': new Date().toUTCString(),
    'x-ms-version': '2021-12-02',
  };
  const length = body?.length ? String(body.length) : '';
  const canonicalHeaders = Object.keys(headers)
    .filter((h) => h.startsWith('x-ms-'))
    .sort()
    .map((h) => `${h}:${headers[h]}\n`)
    .join('');
  const query = [...url.searchParams.keys()]
    .sort()
    .map((k) => `\n${k}:${url.searchParams.get(k)}`)
    .join('');
  const toSign = `${method}\n\n\n${length}\n\n${headers['content-type'] ?? ''}\n\n\n\n\n\n\n${canonicalHeaders}/${AZURITE_ACCOUNT}${url.pathname}${query}`;
  const signature = createHmac('sha256', Buffer.from(AZURITE_KEY, 'base64')).update(toSign).digest('base64');
  headers.authorization = `SharedKey ${AZURITE_ACCOUNT}:${signature}`;
  if (body) headers['content-length'] = String(body.length);
  // A connection of its own each time: a pooled one may be closed by azurite as it is reused.
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const h = new Headers();
        for (const [k, v] of Object.entries(res.headers)) if (typeof v === 'string') h.set(k, v);
        resolve({ status: res.statusCode ?? 0, headers: h, body: Buffer.concat(chunks) });
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** Creates a container; `publicBlobs` lets anyone read its blobs. */
export async function createContainer(
  server: AzuriteServer,
  name: string,
  publicBlobs = false,
): Promise<void> {
  const res = await azuriteRequest(
    server,
    'PUT',
    `${name}?restype=container`,
    undefined,
    publicBlobs ? { 'x-ms-blob-public-access': 'blob' } : {},
  );
  if (res.status !== 201) throw new Error(`creating container ${name}: HTTP ${res.status} ${res.body}`);
}

/**
 * An account SAS for the blob service, signed with the development key: `permissions` from
 * "racwdl" (read, add, create, write, delete, list), valid for an hour.
 */
export function accountSas(permissions: string, key = AZURITE_KEY): string {
  const version = '2019-12-12';
  const expiry = new Date(Date.now() + 3600_000).toISOString().replace(/\.\d+Z$/, 'Z');
  const toSign = [AZURITE_ACCOUNT, permissions, 'b', 'sco', '', expiry, '', 'http', version, ''].join('\n');
  const sig = createHmac('sha256', Buffer.from(key, 'base64')).update(toSign).digest('base64');
  return new URLSearchParams({
    sv: version,
    ss: 'b',
    srt: 'sco',
    sp: permissions,
    se: expiry,
    spr: 'http',
    sig,
  }).toString();
}
