import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadClientConfig } from '../src/config.js';
import { parseSize } from '../src/util/size.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-config-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
const write = (name: string, text: string) => {
  const file = path.join(dir, name);
  fs.writeFileSync(file, text);
  return file;
};

describe('loadClientConfig', () => {
  it('uses defaults without a file', () => {
    const c = loadClientConfig({ HOME: dir });
    expect(c).toMatchObject({
      cacheDir: path.join(dir, '.cache', 'kiln'),
      cacheSize: 10 * 1024 ** 3,
      idleTimeout: 600,
    });
    expect(c.configFile).toBeUndefined();
  });

  it('reads the TOML file, and KILN_* overrides it', () => {
    const file = write(
      'ok.toml',
      'cache_dir = "/c"\ncache_size = "2G"\nlog_level = "debug"\nidle_timeout = 5\ndirect_mode = false\ndepend_mode = false\n',
    );
    expect(loadClientConfig({ KILN_CONFIG: file })).toMatchObject({
      cacheDir: '/c',
      cacheSize: 2 * 1024 ** 3,
      logLevel: 'debug',
      idleTimeout: 5,
      directMode: false,
      dependMode: false,
    });
    expect(
      loadClientConfig({ KILN_CONFIG: file, KILN_CACHE_SIZE: '100M', KILN_DIRECT_MODE: 'true' }),
    ).toMatchObject({
      cacheSize: 100 * 1024 ** 2,
      directMode: true,
    });
  });

  it('reads umask as an octal string, from the file or KILN_UMASK, and refuses anything else', () => {
    expect(loadClientConfig({ HOME: dir }).umask).toBeUndefined();
    const file = write('umask.toml', 'umask = "002"\n');
    expect(loadClientConfig({ KILN_CONFIG: file }).umask).toBe(0o002);
    expect(loadClientConfig({ KILN_CONFIG: file, KILN_UMASK: '0027' }).umask).toBe(0o027);
    for (const bad of ['umask = 22\n', 'umask = "8"\n', 'umask = "0777x"\n', 'umask = "1000"\n']) {
      expect(() => loadClientConfig({ KILN_CONFIG: write('bad-umask.toml', bad) }), bad).toThrow(
        /umask.*an octal umask in quotes, such as "002" or "027"/,
      );
    }
  });

  it('names an unknown key and the file', () => {
    const file = write('unknown.toml', 'cache_dri = "/c"\n');
    expect(() => loadClientConfig({ KILN_CONFIG: file })).toThrow(
      `unknown config key "cache_dri" in ${file}`,
    );
  });

  it('names a bad value and where it came from', () => {
    const file = write('bad.toml', 'cache_size = "lots"\n');
    expect(() => loadClientConfig({ KILN_CONFIG: file })).toThrow(
      /invalid value for "cache_size" in .*bad.toml/,
    );
    expect(() => loadClientConfig({ HOME: dir, KILN_IDLE_TIMEOUT: '-1' })).toThrow(
      /idle_timeout" in environment variable KILN_IDLE_TIMEOUT/,
    );
    expect(() => loadClientConfig({ HOME: dir, KILN_LOG_LEVEL: 'loud' })).toThrow(
      /one of error, warn, info, debug/,
    );
  });

  it('reports TOML syntax errors and a missing explicit file', () => {
    expect(() =>
      loadClientConfig({ KILN_CONFIG: write('syntax.toml', 'max_size = "1G"\ncache_dir = \n') }),
    ).toThrow(
      /cannot parse config file .*syntax\.toml: .* at line 2, column \d+ \(TOML syntax: key = "text", key = 10, \[table\]\)$/,
    );
    expect(() => loadClientConfig({ KILN_CONFIG: path.join(dir, 'nope.toml') })).toThrow(
      /cannot parse config file/,
    );
  });
});

describe('parseSize', () => {
  it.each([
    ['10G', 10 * 1024 ** 3],
    ['512M', 512 * 1024 ** 2],
    ['1.5GiB', 1.5 * 1024 ** 3],
    ['100', 100],
    [4096, 4096],
    ['ten', undefined],
    [-1, undefined],
  ])('%s → %s', (input, bytes) => expect(parseSize(input)).toBe(bytes));
});
