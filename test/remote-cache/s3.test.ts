/**
 * The s3 backend against s3rver on 127.0.0.1 (and, for what s3rver cannot show, a small HTTP
 * server that records requests). s3rver does not check SigV4 signatures: a wrong secret key passes,
 * only a wrong access key id is refused, so "wrong credentials" here means a wrong key id.
 * Then kiln daemons with separate cache dirs sharing results through it, and the faults: a bucket
 * that does not exist, a wrong key id, tampered objects, a read-only tier, s3rver killed mid-build.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EntryName, RemoteBackend } from '../../core/dist/cache/remote/backend.js';
import { s3Backend } from '../../core/dist/cache/remote/s3.js';
import { silentLogger } from '../../core/dist/log.js';
import { KilnSandbox, removeTree, tmpDir } from '../helpers/kiln.js';
import { have } from '../helpers/prereq.js';
import { backendConformance } from '../helpers/remote-backend-kit.js';
import {
  haveS3rver,
  S3RVER_KEY_ID,
  S3RVER_SECRET,
  type S3Server,
  startS3rver,
} from '../helpers/servers/s3.js';
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

// The SDK's own chain reads process.env: keep the runner's AWS settings out, and never let it ask
// the instance metadata service (not a loopback address).
for (const k of Object.keys(process.env)) if (k.startsWith('AWS_')) delete process.env[k];
process.env.AWS_EC2_METADATA_DISABLED = 'true';

const BUCKET = 'kiln-test';
const KEYS = { AWS_ACCESS_KEY_ID: S3RVER_KEY_ID, AWS_SECRET_ACCESS_KEY: S3RVER_SECRET };
const signal = () => AbortSignal.timeout(10_000);
const entry = (key = randomBytes(32).toString('hex'), namespace = 'ns'): EntryName => ({
  namespace,
  kind: 'r',
  key,
});

interface Recorded {
  readonly method: string;
  readonly url: string;
  readonly headers: http.IncomingHttpHeaders;
}

/** A loopback HTTP server that records each request and answers with `handler`. */
async function recordingServer(handler: (req: http.IncomingMessage, res: http.ServerResponse) => void) {
  const requests: Recorded[] = [];
  const server = http.createServer((req, res) => {
    requests.push({ method: req.method!, url: req.url!, headers: req.headers });
    req.resume();
    req.on('end', () => handler(req, res));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

const noSuchKey = (_req: http.IncomingMessage, res: http.ServerResponse) => {
  res.writeHead(404, { 'content-type': 'application/xml' });
  res.end(
    '<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchKey</Code><Message>none</Message></Error>',
  );
};

describe.skipIf(!haveS3rver())('s3 backend (s3rver)', () => {
  let server: S3Server;
  let silent: SilentServer;
  const made: RemoteBackend[] = [];
  let tmp: string;

  beforeAll(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-s3-test-'));
    server = await startS3rver([BUCKET]);
    silent = await silentServer();
  });
  afterAll(async () => {
    for (const b of made) await b.close();
    await server?.stop();
    await silent?.close();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  /** A backend for `url` with `table` over the defaults (s3rver's endpoint, path style). */
  const make = async (
    table: Record<string, unknown> = {},
    env: Record<string, string | undefined> = KEYS,
    url = `s3://${BUCKET}/ci`,
  ) => {
    const options = s3Backend.parseOptions(
      url,
      { endpoint: server.endpoint, path_style: true, region: 'us-east-1', ...table },
      'test config',
    );
    const b = await s3Backend.create(options, { log: silentLogger, connectTimeoutMs: 2000, env });
    made.push(b);
    return b;
  };

  backendConformance('s3', {
    make: () => make(),
    makeHanging: () => make({ endpoint: `http://127.0.0.1:${silent.port}` }),
  });

  it('stores an entry as the object PREFIX/namespace/kind/key, byte for byte', async () => {
    const b = await make({}, KEYS, `s3://${BUCKET}/team/a`);
    const name = entry();
    const data = randomBytes(4096);
    await b.put(name, data, signal());
    const file = path.join(server.dir, BUCKET, 'team', 'a', 'ns', 'r', `${name.key}._S3rver_object`);
    expect(fs.readFileSync(file).equals(data)).toBe(true);
    // Without a prefix, at the bucket's root.
    const root = await make({}, KEYS, `s3://${BUCKET}`);
    await root.put(name, Buffer.from('at the root'), signal());
    expect(
      fs.readFileSync(path.join(server.dir, BUCKET, 'ns', 'r', `${name.key}._S3rver_object`), 'utf8'),
    ).toBe('at the root');
  });

  it('a bucket that does not exist is an error that says so, for every operation', async () => {
    const b = await make({}, KEYS, 's3://no-such-bucket/ci');
    const msg = `the S3 bucket "no-such-bucket" at ${server.endpoint} does not exist: create the bucket, or fix the bucket name in the url (s3://no-such-bucket/ci)`;
    const err = { code: 'KILN_ERR_STORAGE_NO_CONTAINER', message: msg };
    await expect(b.get(entry(), signal())).rejects.toMatchObject(err);
    await expect(b.exists(entry(), signal())).rejects.toMatchObject(err);
    await expect(b.put(entry(), Buffer.from('x'), signal())).rejects.toMatchObject(err);
    await expect(b.remove(entry(), signal())).rejects.toMatchObject(err);
  });

  it('a wrong access key id is refused (s3rver checks the key id, not the signature)', async () => {
    const b = await make({}, { AWS_ACCESS_KEY_ID: 'NOT-S3RVER', AWS_SECRET_ACCESS_KEY: S3RVER_SECRET });
    const denied = {
      code: 'KILN_ERR_STORAGE_DENIED',
      message: `the S3 bucket "${BUCKET}" at ${server.endpoint} refused the credentials: InvalidAccessKeyId: The AWS Access Key Id you provided does not exist in our records. (HTTP 403)`,
    };
    await expect(b.get(entry(), signal())).rejects.toMatchObject(denied);
    await expect(b.put(entry(), Buffer.from('x'), signal())).rejects.toMatchObject(denied);
    // What s3rver does not check: a wrong secret with the right key id passes.
    const wrongSecret = await make({}, { AWS_ACCESS_KEY_ID: S3RVER_KEY_ID, AWS_SECRET_ACCESS_KEY: 'wrong' });
    expect(await wrongSecret.get(entry(), signal())).toBeUndefined();
  });

  it('takes keys from the variables access_key_id_env and secret_access_key_env name', async () => {
    const table = { access_key_id_env: 'CACHE_KEY_ID', secret_access_key_env: 'CACHE_SECRET' };
    const env = { CACHE_KEY_ID: S3RVER_KEY_ID, CACHE_SECRET: S3RVER_SECRET, AWS_ACCESS_KEY_ID: 'IGNORED' };
    const b = await make(table, env);
    const name = entry();
    await b.put(name, Buffer.from('named variables'), signal());
    expect((await b.get(name, signal()))?.toString()).toBe('named variables');

    const unset = await make(table, {
      AWS_ACCESS_KEY_ID: S3RVER_KEY_ID,
      AWS_SECRET_ACCESS_KEY: S3RVER_SECRET,
    });
    await expect(unset.get(entry(), signal())).rejects.toMatchObject({
      code: 'KILN_ERR_STORAGE_CREDENTIALS',
      message: `no credentials for the S3 bucket "${BUCKET}" at ${server.endpoint}: access_key_id_env names CACHE_KEY_ID and secret_access_key_env names CACHE_SECRET: set both in the daemon's environment`,
    });
  });

  it('takes keys from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN', async () => {
    const rec = await recordingServer(noSuchKey);
    try {
      const env = {
        AWS_ACCESS_KEY_ID: 'AKIDFROMENV',
        AWS_SECRET_ACCESS_KEY: 'secret',
        AWS_SESSION_TOKEN: 'tok-1',
      };
      const b = await make({ endpoint: rec.endpoint }, env);
      expect(await b.get(entry('abc'), signal())).toBeUndefined();
      expect(rec.requests).toHaveLength(1);
      expect(rec.requests[0]!.method).toBe('GET');
      expect(rec.requests[0]!.url.split('?')[0]).toBe(`/${BUCKET}/ci/ns/r/abc`);
      expect(rec.requests[0]!.headers.authorization).toMatch(
        /^AWS4-HMAC-SHA256 Credential=AKIDFROMENV\/\d{8}\/us-east-1\/s3\/aws4_request, SignedHeaders=[^ ]*x-amz-security-token/,
      );
      expect(rec.requests[0]!.headers['x-amz-security-token']).toBe('tok-1');
    } finally {
      await rec.close();
    }
    // And against s3rver: the key id from the environment is the one it knows.
    const b = await make({}, KEYS);
    await b.put(entry(), Buffer.from('x'), signal());
  });

  it('takes keys from ~/.aws/credentials and ~/.aws/config, by AWS_PROFILE or profile', async () => {
    const home = path.join(tmp, 'home');
    fs.mkdirSync(path.join(home, '.aws'), { recursive: true });
    fs.writeFileSync(
      path.join(home, '.aws', 'credentials'),
      `[default]\naws_access_key_id = ${S3RVER_KEY_ID}\naws_secret_access_key = ${S3RVER_SECRET}\n\n` +
        '[wrong]\naws_access_key_id = NOT-S3RVER\naws_secret_access_key = x\n',
    );
    fs.writeFileSync(
      path.join(home, '.aws', 'config'),
      `[profile from-config]\naws_access_key_id = ${S3RVER_KEY_ID}\naws_secret_access_key = ${S3RVER_SECRET}\n`,
    );
    const name = entry();
    const byDefault = await make({}, { HOME: home });
    await byDefault.put(name, Buffer.from('from the credentials file'), signal());
    expect((await byDefault.get(name, signal()))?.toString()).toBe('from the credentials file');

    const fromConfig = await make({}, { HOME: home, AWS_PROFILE: 'from-config' });
    expect((await fromConfig.get(name, signal()))?.toString()).toBe('from the credentials file');

    // The profile is really read: one with a wrong key id is refused, by AWS_PROFILE or by `profile`.
    const wrong = await make({}, { HOME: home, AWS_PROFILE: 'wrong' });
    await expect(wrong.get(name, signal())).rejects.toMatchObject({ code: 'KILN_ERR_STORAGE_DENIED' });
    const wrongByKey = await make({ profile: 'wrong' }, { HOME: home, ...KEYS });
    await expect(wrongByKey.get(name, signal())).rejects.toMatchObject({ code: 'KILN_ERR_STORAGE_DENIED' });
  });

  it('no credentials anywhere is an error that says where to put them', async () => {
    const b = await make({}, { HOME: path.join(tmp, 'empty-home') });
    const rejected = b.get(entry(), signal());
    await expect(rejected).rejects.toMatchObject({ code: 'KILN_ERR_STORAGE_CREDENTIALS' });
    await expect(rejected).rejects.toThrow(
      /^no credentials for the S3 bucket "kiln-test" at http:\/\/127\.0\.0\.1:\d+: .*\(set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, ~\/\.aws\/credentials, or no_credentials = true for a public bucket\)$/,
    );
  });

  it('no_credentials sends unsigned requests (a public-read bucket)', async () => {
    const rec = await recordingServer(noSuchKey);
    try {
      const b = await make({ endpoint: rec.endpoint, no_credentials: true }, {});
      expect(await b.get(entry(), signal())).toBeUndefined();
      expect(rec.requests).toHaveLength(1);
      expect(rec.requests[0]!.headers.authorization).toBeUndefined();
    } finally {
      await rec.close();
    }
    // s3rver serves requests without an Authorization header.
    const signed = await make();
    const name = entry();
    await signed.put(name, Buffer.from('public'), signal());
    const anonymous = await make({ no_credentials: true }, {});
    expect((await anonymous.get(name, signal()))?.toString()).toBe('public');
  });

  it('a body cut short is an error, not a short entry; a stalled body gives up on abort', async () => {
    const rec = await recordingServer((req, res) => {
      res.writeHead(200, { 'content-length': '1000', 'content-type': 'application/octet-stream' });
      res.write(Buffer.alloc(100, 1));
      if (req.url!.includes('/cut')) res.destroy();
      // else: the rest never comes
    });
    try {
      const b = await make({ endpoint: rec.endpoint });
      await expect(b.get(entry('cut'), signal())).rejects.toThrow();
      const started = Date.now();
      await expect(b.get(entry('stall'), AbortSignal.timeout(300))).rejects.toMatchObject({
        code: 'KILN_ERR_STORAGE_REMOTE',
      });
      expect(Date.now() - started).toBeLessThan(3000);
    } finally {
      await rec.close();
    }
  });

  it('a server that is not there is an error', async () => {
    const rec = await recordingServer(noSuchKey);
    const endpoint = rec.endpoint;
    await rec.close();
    const b = await make({ endpoint });
    await expect(b.get(entry(), signal())).rejects.toMatchObject({ code: 'KILN_ERR_STORAGE_REMOTE' });
  });
});

describe('s3 backend options', () => {
  const parse = (url: string, table: Record<string, unknown> = {}) =>
    s3Backend.parseOptions(url, table, 'kiln.toml:3');

  it('reads the url and the keys', () => {
    expect(
      parse('s3://my-bucket/some/prefix/', {
        endpoint: 'https://minio.example:9000',
        region: 'eu-west-1',
        path_style: true,
        access_key_id_env: 'K',
        secret_access_key_env: 'S',
        session_token_env: 'T',
      }),
    ).toEqual({
      bucket: 'my-bucket',
      prefix: 'some/prefix',
      endpoint: 'https://minio.example:9000',
      region: 'eu-west-1',
      pathStyle: true,
      keyEnv: { id: 'K', secret: 'S', token: 'T' },
      profile: undefined,
      noCredentials: false,
    });
    expect(parse('s3://b1')).toMatchObject({ bucket: 'b1', prefix: '', pathStyle: false, keyEnv: undefined });
    expect(s3Backend.describe('s3://b1/p')).toBe('s3://b1/p');
    expect(s3Backend.schemes).toEqual(['s3']);
    expect(s3Backend.type).toBe('s3');
  });

  it('rejects bad values, naming the key and where', () => {
    const url = 'expected s3://BUCKET or s3://BUCKET/PREFIX, without credentials, port or query';
    expect(() => parse('s3://key:secret@bucket/p')).toThrow(`invalid value for "url" in kiln.toml:3: ${url}`);
    expect(() => parse('s3://bucket/p?x=1')).toThrow(`invalid value for "url" in kiln.toml:3: ${url}`);
    expect(() => parse('http://bucket/p')).toThrow(`invalid value for "url" in kiln.toml:3: ${url}`);
    expect(() => parse('s3://b', { endpoint: 'ftp://x' })).toThrow(
      'invalid value for "endpoint" in kiln.toml:3: expected an http:// or https:// URL without credentials',
    );
    expect(() => parse('s3://b', { path_style: 'yes' })).toThrow(
      'invalid value for "path_style" in kiln.toml:3: expected true or false',
    );
    expect(() => parse('s3://b', { access_key_id_env: 'K' })).toThrow(
      expect.objectContaining({
        code: 'KILN_ERR_CONFIG_MISSING',
        message: expect.stringContaining('"secret_access_key_env"'),
      }),
    );
    expect(() => parse('s3://b', { access_key_id_env: 'not a name', secret_access_key_env: 'S' })).toThrow(
      'invalid value for "access_key_id_env" in kiln.toml:3: expected the name of an environment variable (letters, digits, _)',
    );
    expect(() => parse('s3://b', { no_credentials: true, profile: 'p' })).toThrow(
      expect.objectContaining({ code: 'KILN_ERR_CONFIG_INVALID' }),
    );
  });

  it('the registry and parseOptions load no client library; create does', () => {
    // A resolve hook that refuses the client libraries: any static import of one fails the import.
    const hook = `export async function resolve(specifier, context, next) {
      if (/^@aws-sdk\\/|^@azure\\//.test(specifier)) throw new Error('client library loaded: ' + specifier);
      return next(specifier, context);
    }`;
    const register = `import { register } from 'node:module'; register(${JSON.stringify(`data:text/javascript,${encodeURIComponent(hook)}`)});`;
    const dist = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../core/dist/cache/remote');
    const run = (body: string) =>
      spawnSync(
        process.execPath,
        [
          '--import',
          `data:text/javascript,${encodeURIComponent(register)}`,
          '--input-type=module',
          '-e',
          body,
        ],
        { encoding: 'utf8', env: { ...process.env, AWS_EC2_METADATA_DISABLED: 'true' } },
      );
    const registry = pathToFileURL(path.join(dist, 'registry.js')).href;
    const parsed = run(
      `const { backendByType } = await import(${JSON.stringify(registry)});
       const s3 = backendByType('s3');
       s3.parseOptions('s3://bucket/p', { endpoint: 'http://127.0.0.1:1' }, 'here');
       console.log('parsed');`,
    );
    expect(parsed.stderr).toBe('');
    expect(parsed.stdout).toBe('parsed\n');
    const created = run(
      `const { backendByType } = await import(${JSON.stringify(registry)});
       const s3 = backendByType('s3');
       await s3.create(s3.parseOptions('s3://bucket/p', {}, 'here'), { log: console, connectTimeoutMs: 1, env: {} });`,
    );
    expect(created.status).not.toBe(0);
    expect(created.stderr).toContain('client library loaded: @aws-sdk/client-s3');
  });
});

/** Every object s3rver holds under `prefix` of `bucket` (its data dir: one file per object). */
function storedObjects(server: S3Server, bucket: string, prefix: string): string[] {
  const root = path.join(server.dir, bucket, prefix);
  if (!fs.existsSync(root)) return [];
  return (fs.readdirSync(root, { recursive: true }) as string[])
    .filter((f) => f.endsWith('._S3rver_object'))
    .map((f) => path.join(root, f));
}

describe.runIf(haveS3rver() && have('gcc'))('daemons share results through s3rver', () => {
  const SHARED = 'kiln-shared';
  let server: S3Server;
  let dir: string;
  const made: KilnSandbox[] = [];
  beforeAll(async () => {
    server = await startS3rver([SHARED]);
    dir = tmpDir('kiln-s3-daemons-');
  });
  afterAll(async () => {
    for (const sb of made) sb.dispose();
    await server?.stop();
    if (dir) removeTree(dir);
  });

  /** KILN_REMOTE_STORAGE for `bucket`/`prefix` on `endpoint`, with more `|key=value` attributes. */
  const spec = (prefix: string, attrs = '', bucket = SHARED, endpoint = server.endpoint) =>
    `s3://${bucket}/${prefix}|endpoint=${endpoint}|path_style=true|region=us-east-1${attrs}`;
  /** A daemon whose only remote tier is `tier`; the keys in its environment unless `env` says otherwise. */
  const sandbox = (tier: string, env: NodeJS.ProcessEnv = KEYS) => {
    const sb = new KilnSandbox('native', {
      KILN_REMOTE_STORAGE: tier,
      AWS_EC2_METADATA_DISABLED: 'true',
      ...env,
    });
    made.push(sb);
    return sb;
  };
  const project = (name: string) => {
    const proj = path.join(dir, name);
    writeProject(proj, name);
    return { proj, want: plainObjects(proj) };
  };

  it('a second daemon, with an empty local cache and keys from ~/.aws/credentials, hits every object', async () => {
    const a = sandbox(spec('share'));
    const b = sandbox(spec('share'), {});
    fs.mkdirSync(path.join(b.env.HOME!, '.aws'));
    fs.writeFileSync(
      path.join(b.env.HOME!, '.aws', 'credentials'),
      `[default]\naws_access_key_id = ${S3RVER_KEY_ID}\naws_secret_access_key = ${S3RVER_SECRET}\n`,
    );
    const { proj, want } = project('share');

    const entries = await fillTier(a, proj, want, 'share');
    expect(storedObjects(server, SHARED, 'share')).toHaveLength(entries);

    // All from the bucket.
    expect(buildFromTier(b, proj, want, 'share')).toMatchObject({ misses: 0, errors: 0 });
  });

  it('a bucket that does not exist: every object is compiled, the errors are counted and logged', async () => {
    const a = sandbox(spec('x', '', 'no-such-bucket'));
    const { proj, want } = project('nobucket');
    expectSameObjects(buildThroughKiln(a, proj), want);
    const c = await waitForTier(a, 'no-such-bucket', (x) => x.errors > 0);
    expect(c.errors).toBeGreaterThan(0);
    expect(c).toMatchObject({ hits: 0, writes: 0 });
    expect(a.stats().stats.misses).toBe(SOURCES.length);
    expect(a.log()).toContain(`the S3 bucket "no-such-bucket" at ${server.endpoint} does not exist`);
    expect(fs.existsSync(path.join(server.dir, 'no-such-bucket'))).toBe(false);
  });

  it('a wrong access key id: every object is compiled, the refusals are counted and logged', async () => {
    const a = sandbox(spec('wrongkey'), {
      AWS_ACCESS_KEY_ID: 'NOT-S3RVER',
      AWS_SECRET_ACCESS_KEY: S3RVER_SECRET,
    });
    const { proj, want } = project('wrongkey');
    expectSameObjects(buildThroughKiln(a, proj), want);
    const c = await waitForTier(a, 'wrongkey', (x) => x.errors > 0);
    expect(c.errors).toBeGreaterThan(0);
    expect(c).toMatchObject({ hits: 0, writes: 0 });
    expect(a.log()).toContain('refused the credentials: InvalidAccessKeyId');
    expect(storedObjects(server, SHARED, 'wrongkey')).toEqual([]);
  });

  it('a tampered object is a counted miss and the object is compiled correctly', async () => {
    const a = sandbox(spec('tamper'));
    const { proj, want } = project('tamper');
    buildThroughKiln(a, proj);
    const entries = localEntries(a);
    await waitForTier(a, 'tamper', (c) => c.writes === entries);
    const files = storedObjects(server, SHARED, 'tamper');
    expect(files).toHaveLength(entries);
    // One byte flipped in the middle of every stored object, behind kiln's back.
    for (const file of files) {
      const data = fs.readFileSync(file);
      data[data.length >> 1] ^= 0x40;
      fs.writeFileSync(file, data);
    }
    const b = sandbox(spec('tamper'));
    expectSameObjects(buildThroughKiln(b, proj), want);
    expect(b.stats().stats.misses).toBe(SOURCES.length);
    const c = tierCounts(b, 'tamper');
    expect(c.hits).toBe(0);
    expect(c.corrupt).toBeGreaterThanOrEqual(SOURCES.length);
  });

  it('a read-only tier serves hits and never writes', async () => {
    const writer = sandbox(spec('readonly'));
    const first = project('readonly');
    buildThroughKiln(writer, first.proj);
    const entries = localEntries(writer);
    await waitForTier(writer, 'readonly', (c) => c.writes === entries);
    const before = storedObjects(server, SHARED, 'readonly').sort();
    expect(before).toHaveLength(entries);

    const reader = sandbox(spec('readonly', '|read_only=true'));
    expectSameObjects(buildThroughKiln(reader, first.proj), first.want);
    expect(tierCounts(reader, 'readonly')).toMatchObject({ hits: 2 * SOURCES.length, misses: 0, writes: 0 });
    // And a project the bucket has never seen: compiled here, not written there.
    const second = project('readonly-new');
    expectSameObjects(buildThroughKiln(reader, second.proj), second.want);
    reader.stopAndWait();
    expect(storedObjects(server, SHARED, 'readonly').sort()).toEqual(before);
    // Looked up (misses), compiled here, never written there.
    const c = tierCounts(reader, 'readonly');
    expect(c).toMatchObject({ writes: 0, backfills: 0, errors: 0, dropped: 0 });
    expect(c.misses).toBeGreaterThanOrEqual(SOURCES.length);
  });

  it('s3rver killed in the middle of a build: every object is still correct, the errors are counted', async () => {
    const own = await startS3rver([SHARED]);
    const a = sandbox(spec('killed', '', SHARED, own.endpoint));
    try {
      const { proj, want } = project('killed');
      await buildKillingTier(a, proj, want, 'killed', () => own.kill());
    } finally {
      await own.stop();
    }
  });
});
