/**
 * The plugin loader with one small fixture per way a plugin can be wrong. Every failure is a
 * KilnError with its own code and a message that names the plugin.
 */
import 'reflect-metadata';
import path from 'node:path';
import { container, type DependencyContainer } from 'tsyringe';
import { beforeEach, describe, expect, it } from 'vitest';
import { definePlugin, KilnError, loadPlugin, PLUGIN_API_VERSION, SANDBOX } from '../src/index.js';

const baseDir = path.join(import.meta.dirname, 'fixtures');
let child: DependencyContainer;
beforeEach(() => {
  child = container.createChildContainer();
});

const load = (spec: string, config?: unknown, kind: 'sandbox' | 'resolver' = 'sandbox') =>
  loadPlugin({ spec, kind, config, container: child, baseDir });

async function failure(spec: string, config?: unknown): Promise<KilnError> {
  const err = await load(spec, config).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(KilnError);
  return err as KilnError;
}

describe('loadPlugin', () => {
  it('loads a good plugin from a path, validates its config and registers it', async () => {
    const loaded = await load('./good-sandbox.js', { level: 5 });
    expect(loaded).toMatchObject({ name: 'good', kind: 'sandbox', config: { level: 5 } });
    expect(loaded.source).toBe(path.join(baseDir, 'good-sandbox.js'));
    const sandbox = child.resolve(SANDBOX) as unknown as { name: string; config: unknown };
    expect(sandbox.name).toBe('good');
    expect(await child.resolve(SANDBOX).probe()).toEqual({ ok: true, detail: 'always fine' });
    expect(Object.isFrozen(sandbox.config)).toBe(true);
  });

  it('takes a builtin by its short name before any package', async () => {
    const builtin = definePlugin({
      name: 'mem',
      kind: 'sandbox',
      apiVersion: PLUGIN_API_VERSION,
      configSchema: { type: 'object', properties: {} },
      register: (c) => void c.register(SANDBOX, { useValue: { name: 'mem' } as never }),
    });
    const loaded = await loadPlugin({
      spec: 'mem',
      kind: 'sandbox',
      config: undefined,
      container: child,
      baseDir,
      builtins: { mem: builtin },
    });
    expect(loaded.source).toBe('builtin');
  });

  it.each([
    ['not made with definePlugin', './not-defined.js', 'KILN_ERR_PLUGIN_INVALID', /definePlugin/],
    ['without a default export', './no-default.js', 'KILN_ERR_PLUGIN_INVALID', /definePlugin/],
    [
      'of another api version',
      './wrong-api-version.js',
      'KILN_ERR_PLUGIN_API_VERSION',
      /version 999.*version 1/,
    ],
    [
      'of the wrong kind',
      './wrong-kind.js',
      'KILN_ERR_PLUGIN_INVALID',
      /resolver plugin, but a sandbox plugin/,
    ],
    ['that throws on import', './throws-on-import.js', 'KILN_ERR_PLUGIN_BROKEN', /boom while importing/],
    [
      'missing a dependency',
      './missing-dependency.js',
      'KILN_ERR_PLUGIN_BROKEN',
      /kiln-fixture-no-such-package/,
    ],
    ['at a path that does not exist', './nowhere.js', 'KILN_ERR_PLUGIN_NOT_FOUND', /not installed/],
  ])('refuses a plugin %s, naming it as configured', async (_what, spec, code, message) => {
    const err = await failure(spec);
    expect(err.code).toBe(code);
    expect(err.message).toMatch(message);
    expect(err.message).toContain(`"${spec}"`);
  });

  it.each([
    [
      'whose register throws',
      './register-throws.js',
      /"register-throws" failed to register: cannot reach the engine/,
    ],
    [
      'that registers nothing',
      './registers-nothing.js',
      /"registers-nothing" failed to register: it registered no sandbox/,
    ],
  ])('refuses a plugin %s, naming it', async (_what, spec, message) => {
    const err = await failure(spec);
    expect(err.code).toBe('KILN_ERR_PLUGIN_REGISTER');
    expect(err.message).toMatch(message);
  });

  it('says a missing short name is not installed and lists what is', async () => {
    const err = await failure('nosuch');
    expect(err.code).toBe('KILN_ERR_PLUGIN_NOT_FOUND');
    expect(err.message).toContain('sandbox plugin "nosuch" is not installed');
    expect(err.message).toContain('@kiln/sandbox-nosuch');
    // The workspace links @kiln/sandbox-bwrap into node_modules.
    expect(err.message).toMatch(/available sandbox plugins: .*\bbwrap\b/);
  });

  it('says a missing package name is not installed', async () => {
    const err = await failure('@acme/kiln-sandbox-none');
    expect(err.code).toBe('KILN_ERR_PLUGIN_NOT_FOUND');
    expect(err.message).toContain('"@acme/kiln-sandbox-none"');
  });
});

describe('plugin config schema', () => {
  const configured = async (config: unknown) => {
    await load('./configurable-sandbox.js', config);
    return (child.resolve(SANDBOX) as unknown as { config: Record<string, unknown> }).config;
  };

  it('fills in defaults, nested tables included, and freezes the result', async () => {
    const config = await configured({ endpoint: 'unix:///run/x.sock' });
    expect(config).toEqual({
      endpoint: 'unix:///run/x.sock',
      mode: 'strict',
      jobs: 4,
      verbose: false,
      mounts: [],
      limits: { memory_mb: 512 },
    });
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.limits)).toBe(true);
  });

  it('keeps the values it was given', async () => {
    const config = await configured({
      endpoint: 'tcp://h:1',
      mode: 'relaxed',
      jobs: 64,
      ratio: 0.5,
      verbose: true,
      mounts: ['/a'],
      limits: { memory_mb: 16, pids: 10 },
    });
    expect(config).toMatchObject({
      mode: 'relaxed',
      jobs: 64,
      ratio: 0.5,
      mounts: ['/a'],
      limits: { pids: 10 },
    });
  });

  it.each([
    [
      'an unknown key',
      { endpoint: 'tcp://h', colour: 'red' },
      /"colour": unknown key \(known keys: endpoint, mode/,
    ],
    ['an unknown nested key', { endpoint: 'tcp://h', limits: { cpu: 1 } }, /"limits\.cpu": unknown key/],
    ['a wrong type', { endpoint: 'tcp://h', jobs: '4' }, /"jobs": expected an integer, got string "4"/],
    ['a fraction for an integer', { endpoint: 'tcp://h', jobs: 1.5 }, /"jobs": expected an integer/],
    [
      'a value outside the enum',
      { endpoint: 'tcp://h', mode: 'lax' },
      /"mode": expected one of "strict", "relaxed", got "lax"/,
    ],
    ['a value under the minimum', { endpoint: 'tcp://h', jobs: 0 }, /"jobs": must be at least 1/],
    ['a value over the maximum', { endpoint: 'tcp://h', ratio: 2 }, /"ratio": must be at most 1/],
    ['a missing required key', {}, /"endpoint": is required/],
    ['a pattern mismatch', { endpoint: 'http://h' }, /"endpoint": "http:\/\/h" does not match/],
    ['a scalar for a table', { endpoint: 'tcp://h', limits: 5 }, /"limits": expected a table/],
    [
      'a wrong type in a nested table',
      { endpoint: 'tcp://h', limits: { pids: 'many' } },
      /"limits\.pids": expected an integer/,
    ],
    [
      'a non-string array item',
      { endpoint: 'tcp://h', mounts: ['/a', 1] },
      /"mounts": expected an array of strings/,
    ],
    ['a config that is not a table', 'strict', /expected a table, got string/],
  ])('refuses %s, naming the key', async (_what, config, message) => {
    const err = await failure('./configurable-sandbox.js', config);
    expect(err.code).toBe('KILN_ERR_PLUGIN_CONFIG');
    expect(err.message).toContain('invalid configuration for plugin "configurable"');
    expect(err.message).toMatch(message);
    expect(child.isRegistered(SANDBOX)).toBe(false);
  });
});
