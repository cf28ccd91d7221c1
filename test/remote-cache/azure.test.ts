/**
 * The azure backend against azurite's blob service on 127.0.0.1 (and, for what azurite cannot show,
 * a small HTTP server that records requests). Azurite checks SharedKey signatures and SAS tokens of
 * its development account, so wrong keys and read-only tokens are refused as Azure would.
 * Then kiln daemons with separate cache dirs sharing results through it, and the faults: a
 * container that does not exist, a wrong key, tampered blobs, a read-only tier (by kiln's setting
 * and by a read-only SAS), azurite killed mid-build.
 */
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { azureBackend } from '../../core/dist/cache/remote/azure.js';
import type { EntryName, RemoteBackend } from '../../core/dist/cache/remote/backend.js';
import { silentLogger } from '../../core/dist/log.js';
import { KilnSandbox, removeTree, tmpDir } from '../helpers/kiln.js';
import { have } from '../helpers/prereq.js';
import { backendConformance } from '../helpers/remote-backend-kit.js';
import {
  AZURITE_ACCOUNT,
  AZURITE_KEY,
  type AzuriteServer,
  accountSas,
  azuriteRequest,
  createContainer,
  haveAzurite,
  startAzurite,
} from '../helpers/servers/azurite.js';
import {
  buildFromTier,
  buildKillingTier,
  buildThroughKiln,
  expectSameObjects,
  fillTier,
  localEntries,
  plainObjects,
  SOURCES,
  tierCounts,
  waitForTier,
  writeProject,
} from '../helpers/shared-cache.js';
import { type SilentServer, silentServer } from '../helpers/silent-server.js';

// The daemons these tests start inherit process.env: keep the runner's Azure settings out.
for (const k of Object.keys(process.env)) if (k.startsWith('AZURE_')) delete process.env[k];

const CONTAINER = 'kiln-test';
const signal = () => AbortSignal.timeout(10_000);
const entry = (key = randomBytes(32).toString('hex'), namespace = 'ns'): EntryName => ({
  namespace,
  kind: 'r',
  key,
});
/** Another valid key of the same length: a wrong password. */
const WRONG_KEY = randomBytes(64).toString('base64');

interface Recorded {
  readonly method: string;
  readonly url: string;
  readonly headers: http.IncomingHttpHeaders;
}

async function recordingServer(handler: (req: http.IncomingMessage, res: http.ServerResponse) => void) {
  const requests: Recorded[] = [];
  const server = http.createServer((req, res) => {
    requests.push({ method: req.method!, url: req.url!, headers: req.headers });
    req.resume();
    req.on('end', () => handler(req, res));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    accountUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}/acct`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

describe.skipIf(!haveAzurite())('azure backend (azurite)', () => {
  let server: AzuriteServer;
  let silent: SilentServer;
  const made: RemoteBackend[] = [];

  beforeAll(async () => {
    server = await startAzurite();
    silent = await silentServer();
    await createContainer(server, CONTAINER);
    await createContainer(server, 'public-blobs', true);
  });
  afterAll(async () => {
    for (const b of made) await b.close();
    await server?.stop();
    await silent?.close();
  });

  const make = async (
    table: Record<string, unknown> = {},
    env: Record<string, string | undefined> = { AZURE_STORAGE_CONNECTION_STRING: server.connectionString },
    url = `azure://${CONTAINER}/ci`,
  ) => {
    const b = await azureBackend.create(azureBackend.parseOptions(url, table, 'test config'), {
      log: silentLogger,
      connectTimeoutMs: 2000,
      env,
    });
    made.push(b);
    return b;
  };
  const what = (container = CONTAINER) => `the Azure container "${container}" at ${server.accountUrl}`;

  backendConformance('azure (connection string with the account key)', {
    make: () => make(),
    makeHanging: () =>
      make(
        { account_url: `http://127.0.0.1:${silent.port}/${AZURITE_ACCOUNT}` },
        { AZURE_STORAGE_KEY: AZURITE_KEY },
      ),
  });

  backendConformance('azure (account url and a SAS token)', {
    make: () => make({ account_url: server.accountUrl }, { AZURE_STORAGE_SAS_TOKEN: accountSas('racwdl') }),
    largeBytes: 1024 * 1024,
  });

  it('stores an entry as the blob PREFIX/namespace/kind/key, byte for byte', async () => {
    const b = await make({}, undefined, `azure://${CONTAINER}/team/a`);
    const name = entry();
    const data = randomBytes(4096);
    await b.put(name, data, signal());
    const raw = await azuriteRequest(server, 'GET', `${CONTAINER}/team/a/ns/r/${name.key}`);
    expect(raw.status).toBe(200);
    expect(raw.body.equals(data)).toBe(true);
    expect(raw.headers.get('x-ms-blob-type')).toBe('BlockBlob');
  });

  it('a container that does not exist is an error that says so, for every operation', async () => {
    const b = await make({}, undefined, 'azure://no-such-container/ci');
    const err = {
      code: 'KILN_ERR_STORAGE_NO_CONTAINER',
      message: `${what('no-such-container')} does not exist: create the container, or fix the container name in the url (azure://no-such-container/ci)`,
    };
    await expect(b.get(entry(), signal())).rejects.toMatchObject(err);
    await expect(b.exists(entry(), signal())).rejects.toMatchObject(err);
    await expect(b.put(entry(), Buffer.from('x'), signal())).rejects.toMatchObject(err);
    await expect(b.remove(entry(), signal())).rejects.toMatchObject(err);
  });

  it('a wrong account key is refused', async () => {
    const b = await make(
      {},
      { AZURE_STORAGE_CONNECTION_STRING: server.connectionString.replace(AZURITE_KEY, WRONG_KEY) },
    );
    const denied = {
      code: 'KILN_ERR_STORAGE_DENIED',
      // Azure says AuthenticationFailed, azurite AuthorizationFailure.
      message: `${what()} refused the credentials: AuthorizationFailure: Server failed to authenticate the request. Make sure the value of the Authorization header is formed correctly including the signature. (HTTP 403)`,
    };
    await expect(b.get(entry(), signal())).rejects.toMatchObject(denied);
    await expect(b.exists(entry(), signal())).rejects.toMatchObject({ code: 'KILN_ERR_STORAGE_DENIED' });
    await expect(b.put(entry(), Buffer.from('x'), signal())).rejects.toMatchObject(denied);
    const byUrl = await make({ account_url: server.accountUrl }, { AZURE_STORAGE_KEY: WRONG_KEY });
    await expect(byUrl.get(entry(), signal())).rejects.toMatchObject(denied);
  });

  it('a SAS signed with a wrong key is refused; a read-only SAS reads and cannot write', async () => {
    const forged = await make(
      { account_url: server.accountUrl },
      { AZURE_STORAGE_SAS_TOKEN: accountSas('racwdl', WRONG_KEY) },
    );
    await expect(forged.get(entry(), signal())).rejects.toMatchObject({ code: 'KILN_ERR_STORAGE_DENIED' });

    const name = entry();
    await (await make()).put(name, Buffer.from('written with the key'), signal());
    const readOnly = await make(
      { account_url: server.accountUrl, sas_token_env: 'CACHE_SAS' },
      { CACHE_SAS: `?${accountSas('rl')}` },
    );
    expect((await readOnly.get(name, signal()))?.toString()).toBe('written with the key');
    expect(await readOnly.exists(name, signal())).toBe(true);
    await expect(readOnly.put(entry(), Buffer.from('x'), signal())).rejects.toMatchObject({
      code: 'KILN_ERR_STORAGE_DENIED',
      message: expect.stringContaining('AuthorizationPermissionMismatch'),
    });
  });

  it('takes the account key from the variable account_key_env names, or AZURE_STORAGE_KEY', async () => {
    const name = entry();
    const named = await make(
      { account_url: server.accountUrl, account_key_env: 'CACHE_KEY' },
      { CACHE_KEY: AZURITE_KEY, AZURE_STORAGE_KEY: WRONG_KEY },
    );
    await named.put(name, Buffer.from('by a named variable'), signal());
    const byDefault = await make({ account_url: server.accountUrl }, { AZURE_STORAGE_KEY: AZURITE_KEY });
    expect((await byDefault.get(name, signal()))?.toString()).toBe('by a named variable');
    const byConnectionVar = await make(
      { connection_string_env: 'CACHE_CONN' },
      { CACHE_CONN: server.connectionString },
    );
    expect((await byConnectionVar.get(name, signal()))?.toString()).toBe('by a named variable');
  });

  it('a connection string with a SAS works', async () => {
    const name = entry();
    const b = await make(
      {},
      {
        AZURE_STORAGE_CONNECTION_STRING: `BlobEndpoint=${server.accountUrl};SharedAccessSignature=${accountSas('racwdl')}`,
      },
    );
    await b.put(name, Buffer.from('via sas'), signal());
    expect((await b.get(name, signal()))?.toString()).toBe('via sas');
  });

  it('no credentials anywhere is an error that says where to put them', async () => {
    const b = await make({}, {});
    await expect(b.get(entry(), signal())).rejects.toMatchObject({
      code: 'KILN_ERR_STORAGE_CREDENTIALS',
      message: `no credentials for the Azure container "${CONTAINER}": set AZURE_STORAGE_CONNECTION_STRING to a connection string, or give account_url with a SAS token (AZURE_STORAGE_SAS_TOKEN) or the account key (AZURE_STORAGE_KEY)`,
    });
    const byUrl = await make({ account_url: server.accountUrl, sas_token_env: 'CACHE_SAS' }, {});
    await expect(byUrl.put(entry(), Buffer.from('x'), signal())).rejects.toMatchObject({
      code: 'KILN_ERR_STORAGE_CREDENTIALS',
      message: `no credentials for ${what()}: set CACHE_SAS in the daemon's environment, or no_credentials = true for a public container`,
    });
    const badString = await make({}, { AZURE_STORAGE_CONNECTION_STRING: 'AccountName=x' });
    await expect(badString.get(entry(), signal())).rejects.toMatchObject({
      code: 'KILN_ERR_STORAGE_CREDENTIALS',
      message: `no credentials for the Azure container "${CONTAINER}" at https://x.blob.core.windows.net: the connection string in AZURE_STORAGE_CONNECTION_STRING has neither SharedAccessSignature nor AccountName and AccountKey`,
    });
  });

  it('no_credentials sends anonymous requests: a public container reads, and cannot be written', async () => {
    const name = entry();
    await (await make({}, undefined, 'azure://public-blobs/ci')).put(name, Buffer.from('public'), signal());
    const anonymous = await make(
      { account_url: server.accountUrl, no_credentials: true },
      {},
      'azure://public-blobs/ci',
    );
    expect((await anonymous.get(name, signal()))?.toString()).toBe('public');
    expect(await anonymous.get(entry(), signal())).toBeUndefined();
    await expect(anonymous.put(entry(), Buffer.from('x'), signal())).rejects.toThrow();

    const rec = await recordingServer((_req, res) => {
      res.writeHead(404, { 'x-ms-error-code': 'BlobNotFound' });
      res.end();
    });
    try {
      const b = await make({ account_url: rec.accountUrl, no_credentials: true }, {});
      expect(await b.get(entry('abc'), signal())).toBeUndefined();
      expect(rec.requests).toHaveLength(1);
      expect(rec.requests[0]!.url).toBe(`/acct/${CONTAINER}/ci/ns/r/abc`);
      expect(rec.requests[0]!.headers.authorization).toBeUndefined();
    } finally {
      await rec.close();
    }
  });

  it('a 404 that does not say what is missing asks about the container, once', async () => {
    // A server (or proxy) that drops x-ms-error-code: the container "gone" is missing, "there" is not.
    const rec = await recordingServer((req, res) => {
      const exists = req.url!.startsWith('/acct/there');
      res.writeHead(req.url!.endsWith('?restype=container') && exists ? 200 : 404);
      res.end();
    });
    try {
      const there = await make({ account_url: rec.accountUrl, no_credentials: true }, {}, 'azure://there/p');
      expect(await there.exists(entry('a'), signal())).toBe(false);
      expect(await there.get(entry('b'), signal())).toBeUndefined();
      expect(rec.requests.map((r) => `${r.method} ${r.url}`)).toEqual([
        'HEAD /acct/there/p/ns/r/a',
        'GET /acct/there?restype=container',
        'GET /acct/there/p/ns/r/b',
      ]);
      const gone = await make({ account_url: rec.accountUrl, no_credentials: true }, {}, 'azure://gone/p');
      await expect(gone.exists(entry('a'), signal())).rejects.toMatchObject({
        code: 'KILN_ERR_STORAGE_NO_CONTAINER',
      });
    } finally {
      await rec.close();
    }
  });

  it('a kept-alive connection the server closes as it is reused: the request goes again on a new one', async () => {
    const perSocket = new Map<unknown, number>();
    const rec = await recordingServer((req, res) => {
      const n = (perSocket.get(req.socket) ?? 0) + 1;
      perSocket.set(req.socket, n);
      // The second request on a connection finds it closing, as after a server's idle timeout.
      if (n === 2) {
        req.socket.destroy();
        return;
      }
      res.writeHead(404, { 'x-ms-error-code': 'BlobNotFound', 'content-length': '0' });
      res.end();
    });
    try {
      const b = await make({ account_url: rec.accountUrl, no_credentials: true }, {});
      expect(await b.get(entry('one'), signal())).toBeUndefined();
      expect(await b.get(entry('two'), signal())).toBeUndefined();
      expect(rec.requests.map((r) => r.url)).toEqual([
        `/acct/${CONTAINER}/ci/ns/r/one`,
        `/acct/${CONTAINER}/ci/ns/r/two`,
        `/acct/${CONTAINER}/ci/ns/r/two`,
      ]);
      expect(perSocket.size).toBe(2);
    } finally {
      await rec.close();
    }
  });

  it('a body cut short is an error, not a short entry; a stalled body gives up on abort', async () => {
    const rec = await recordingServer((req, res) => {
      res.writeHead(200, { 'content-length': '1000' });
      res.write(Buffer.alloc(100, 1));
      if (req.url!.endsWith('/cut')) res.destroy();
    });
    try {
      const b = await make({ account_url: rec.accountUrl, no_credentials: true }, {});
      await expect(b.get(entry('cut'), signal())).rejects.toMatchObject({ code: 'KILN_ERR_STORAGE_REMOTE' });
      const started = Date.now();
      await expect(b.get(entry('stall'), AbortSignal.timeout(300))).rejects.toMatchObject({
        code: 'KILN_ERR_STORAGE_REMOTE',
        message: expect.stringContaining('gave up'),
      });
      expect(Date.now() - started).toBeLessThan(3000);
    } finally {
      await rec.close();
    }
  });
});

describe('azure backend options', () => {
  const parse = (url: string, table: Record<string, unknown> = {}) =>
    azureBackend.parseOptions(url, table, 'kiln.toml:7');

  it('reads the url and the keys', () => {
    expect(
      parse('azure://cache/some/prefix/', {
        account_url: 'https://acct.blob.core.windows.net/',
        sas_token_env: 'S',
      }),
    ).toEqual({
      container: 'cache',
      prefix: 'some/prefix',
      accountUrl: 'https://acct.blob.core.windows.net',
      connectionStringEnv: 'AZURE_STORAGE_CONNECTION_STRING',
      sasTokenEnv: 'S',
      accountKeyEnv: undefined,
      noCredentials: false,
    });
    expect(parse('azure://cache')).toMatchObject({ container: 'cache', prefix: '', accountUrl: undefined });
    expect(azureBackend.describe('azure://cache/p')).toBe('azure://cache/p');
    expect(azureBackend.schemes).toEqual(['azure']);
  });

  it('rejects bad values, naming the key and where', () => {
    const url = 'expected azure://CONTAINER or azure://CONTAINER/PREFIX, without credentials, port or query';
    expect(() => parse('azure://a:b@cache/p')).toThrow(`invalid value for "url" in kiln.toml:7: ${url}`);
    expect(() => parse('azure://Cache_1')).toThrow(
      `invalid value for "url" in kiln.toml:7: ${url} (a container name: 3 to 63 lowercase letters, digits and single hyphens)`,
    );
    expect(() => parse('azure://cache', { account_url: 'https://a.blob.core.windows.net/?sv=x' })).toThrow(
      expect.objectContaining({
        code: 'KILN_ERR_CONFIG_INVALID',
        message: expect.stringContaining('"account_url"'),
      }),
    );
    expect(() => parse('azure://cache', { sas_token_env: 'S' })).toThrow(
      'invalid value for "sas_token_env" in kiln.toml:7: expected to come with account_url (a connection string names the account)',
    );
    expect(() =>
      parse('azure://cache', { account_url: 'https://a.blob.core.windows.net', connection_string_env: 'C' }),
    ).toThrow(
      expect.objectContaining({
        code: 'KILN_ERR_CONFIG_INVALID',
        message: expect.stringContaining('"connection_string_env"'),
      }),
    );
    expect(() =>
      parse('azure://cache', { account_url: 'https://a.blob.core.windows.net', no_credentials: 'maybe' }),
    ).toThrow('invalid value for "no_credentials" in kiln.toml:7: expected true or false');
  });
});

/** The names of the blobs under `prefix` in `container` (List Blobs). */
async function blobNames(server: AzuriteServer, container: string, prefix: string): Promise<string[]> {
  const res = await azuriteRequest(
    server,
    'GET',
    `${container}?restype=container&comp=list&prefix=${prefix}/`,
  );
  expect(res.status).toBe(200);
  return [...res.body.toString('utf8').matchAll(/<Name>([^<]*)<\/Name>/g)].map((m) => m[1]!).sort();
}

describe.runIf(haveAzurite() && have('gcc'))('daemons share results through azurite', () => {
  const SHARED = 'kiln-shared';
  let server: AzuriteServer;
  let dir: string;
  const made: KilnSandbox[] = [];
  beforeAll(async () => {
    server = await startAzurite();
    await createContainer(server, SHARED);
    dir = tmpDir('kiln-azure-daemons-');
  });
  afterAll(async () => {
    for (const sb of made) sb.dispose();
    await server?.stop();
    if (dir) removeTree(dir);
  });

  const spec = (prefix: string, attrs = '', container = SHARED) => `azure://${container}/${prefix}${attrs}`;
  /** A daemon whose only remote tier is `tier`, with the connection string unless `env` says otherwise. */
  const sandbox = (tier: string, env?: NodeJS.ProcessEnv) => {
    const sb = new KilnSandbox('native', {
      KILN_REMOTE_STORAGE: tier,
      ...(env ?? { AZURE_STORAGE_CONNECTION_STRING: server.connectionString }),
    });
    made.push(sb);
    return sb;
  };
  const project = (name: string) => {
    const proj = path.join(dir, name);
    writeProject(proj, name);
    return { proj, want: plainObjects(proj) };
  };

  it('a second daemon, with an empty local cache and the account URL and key, hits every object', async () => {
    const a = sandbox(spec('share'));
    const b = sandbox(spec('share', `|account_url=${server.accountUrl}`), { AZURE_STORAGE_KEY: AZURITE_KEY });
    const { proj, want } = project('share');

    const entries = await fillTier(a, proj, want, 'share');
    expect(await blobNames(server, SHARED, 'share')).toHaveLength(entries);

    expect(buildFromTier(b, proj, want, 'share')).toMatchObject({ misses: 0, errors: 0 });
  });

  it('a container that does not exist: every object is compiled, the errors are counted and logged', async () => {
    const a = sandbox(spec('x', '', 'no-such-container'));
    const { proj, want } = project('nocontainer');
    expectSameObjects(buildThroughKiln(a, proj), want);
    const c = await waitForTier(a, 'no-such-container', (x) => x.errors > 0);
    expect(c.errors).toBeGreaterThan(0);
    expect(c).toMatchObject({ hits: 0, writes: 0 });
    expect(a.stats().stats.misses).toBe(SOURCES.length);
    expect(a.log()).toContain(
      `the Azure container "no-such-container" at ${server.accountUrl} does not exist`,
    );
  });

  it('a wrong account key: every object is compiled, the refusals are counted and logged', async () => {
    const a = sandbox(spec('wrongkey'), {
      AZURE_STORAGE_CONNECTION_STRING: server.connectionString.replace(AZURITE_KEY, WRONG_KEY),
    });
    const { proj, want } = project('wrongkey');
    expectSameObjects(buildThroughKiln(a, proj), want);
    const c = await waitForTier(a, 'wrongkey', (x) => x.errors > 0);
    expect(c.errors).toBeGreaterThan(0);
    expect(c).toMatchObject({ hits: 0, writes: 0 });
    expect(a.log()).toContain('refused the credentials: AuthorizationFailure');
    expect(await blobNames(server, SHARED, 'wrongkey')).toEqual([]);
    // The key never shows in the stats or the log.
    expect(JSON.stringify(a.stats()) + a.log()).not.toContain(WRONG_KEY);
  });

  it('a tampered blob is a counted miss and the object is compiled correctly', async () => {
    const a = sandbox(spec('tamper'));
    const { proj, want } = project('tamper');
    buildThroughKiln(a, proj);
    const entries = localEntries(a);
    await waitForTier(a, 'tamper', (c) => c.writes === entries);
    const names = await blobNames(server, SHARED, 'tamper');
    expect(names).toHaveLength(entries);
    // One byte flipped in the middle of every blob, written behind kiln's back.
    for (const name of names) {
      const blob = `${SHARED}/${name}`;
      const data = (await azuriteRequest(server, 'GET', blob)).body;
      data[data.length >> 1] ^= 0x40;
      const put = await azuriteRequest(server, 'PUT', blob, data, { 'x-ms-blob-type': 'BlockBlob' });
      expect(put.status).toBe(201);
    }
    const b = sandbox(spec('tamper'));
    expectSameObjects(buildThroughKiln(b, proj), want);
    expect(b.stats().stats.misses).toBe(SOURCES.length);
    const c = tierCounts(b, 'tamper');
    expect(c.hits).toBe(0);
    expect(c.corrupt).toBeGreaterThanOrEqual(SOURCES.length);
  });

  it('a read-only tier serves hits and never writes; so does a tier with a read-only SAS, counting the refusals', async () => {
    const writer = sandbox(spec('readonly'));
    const first = project('readonly');
    buildThroughKiln(writer, first.proj);
    const entries = localEntries(writer);
    await waitForTier(writer, 'readonly', (c) => c.writes === entries);
    const before = await blobNames(server, SHARED, 'readonly');
    expect(before).toHaveLength(entries);

    const reader = sandbox(spec('readonly', '|read_only=true'));
    expectSameObjects(buildThroughKiln(reader, first.proj), first.want);
    expect(tierCounts(reader, 'readonly')).toMatchObject({ hits: 2 * SOURCES.length, misses: 0, writes: 0 });
    const second = project('readonly-new');
    expectSameObjects(buildThroughKiln(reader, second.proj), second.want);
    reader.stopAndWait();
    expect(await blobNames(server, SHARED, 'readonly')).toEqual(before);
    // Looked up (misses), compiled here, never written there.
    const c = tierCounts(reader, 'readonly');
    expect(c).toMatchObject({ writes: 0, backfills: 0, errors: 0, dropped: 0 });
    expect(c.misses).toBeGreaterThanOrEqual(SOURCES.length);

    // Read-only by its token rather than by kiln's setting: the writes are tried and refused.
    const sasReader = sandbox(spec('readonly', `|account_url=${server.accountUrl}`), {
      AZURE_STORAGE_SAS_TOKEN: accountSas('rl'),
    });
    const third = project('readonly-sas');
    expectSameObjects(buildThroughKiln(sasReader, third.proj), third.want);
    const s = await waitForTier(sasReader, 'readonly', (x) => x.errors > 0);
    expect(s.errors).toBeGreaterThan(0);
    expect(s.writes).toBe(0);
    expect(sasReader.log()).toContain('refused the credentials: AuthorizationPermissionMismatch');
    expect(await blobNames(server, SHARED, 'readonly')).toEqual(before);
  });

  it('azurite killed in the middle of a build: every object is still correct, the errors are counted', async () => {
    const own = await startAzurite();
    await createContainer(own, SHARED);
    const a = sandbox(spec('killed'), { AZURE_STORAGE_CONNECTION_STRING: own.connectionString });
    try {
      const { proj, want } = project('killed');
      await buildKillingTier(a, proj, want, 'killed', () => own.kill());
    } finally {
      await own.stop();
    }
  });
});
