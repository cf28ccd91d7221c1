/**
 * Loads a plugin named in a config file: a short name ("bwrap" → @kiln/sandbox-bwrap), a package
 * name, or a file path. It imports the module, checks the descriptor's shape, kind and api version,
 * validates the plugin's config table and only then calls `register`. Every failure stops startup
 * with an error that names the plugin; nothing is skipped.
 */
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { DependencyContainer } from 'tsyringe';
import { ConfigSchemaError, validateConfig } from './config-schema.js';
import { isBranded, PLUGIN_API_VERSION, type PluginDescriptor } from './define-plugin.js';
import {
  KILN_ERR_PLUGIN_API_VERSION,
  KILN_ERR_PLUGIN_BROKEN,
  KILN_ERR_PLUGIN_CONFIG,
  KILN_ERR_PLUGIN_INVALID,
  KILN_ERR_PLUGIN_NOT_FOUND,
  KILN_ERR_PLUGIN_REGISTER,
  KilnError,
} from './errors.js';
import { type PluginKind, TOKEN_FOR_KIND } from './tokens.js';

export interface LoadPluginOptions {
  /** As written in the config: "bwrap", "@acme/kiln-sandbox-x", "./my-sandbox.js". */
  readonly spec: string;
  readonly kind: PluginKind;
  /** The plugin's config table (undefined when absent). */
  readonly config: unknown;
  readonly container: DependencyContainer;
  /** Where relative paths and packages are resolved from: the config file's directory. */
  readonly baseDir: string;
  /** Plugins compiled into the host program, by short name. */
  readonly builtins?: Readonly<Record<string, PluginDescriptor<never>>>;
}

export interface LoadedPlugin {
  readonly name: string;
  readonly kind: PluginKind;
  /** The module it came from, or "builtin". */
  readonly source: string;
  readonly config: unknown;
}

const SHORT_NAME = /^[a-z0-9][a-z0-9-]*$/;

function isPathSpec(spec: string): boolean {
  return spec.startsWith('.') || path.isAbsolute(spec) || /\.(m?js|cjs)$/.test(spec);
}

/** The package a short name stands for. */
export function packageForShortName(kind: PluginKind, name: string): string {
  return `@kiln/${kind}-${name}`;
}

function isNotFound(err: unknown, request: string): boolean {
  const e = err as NodeJS.ErrnoException;
  return (
    (e?.code === 'MODULE_NOT_FOUND' || e?.code === 'ERR_MODULE_NOT_FOUND') &&
    // A missing dependency of the plugin is "broken", not "not installed".
    (e.message.includes(`'${request}'`) || e.message.includes(`"${request}"`))
  );
}

/** Installed plugins of one kind, for the "available" list in errors. */
export function availablePlugins(
  kind: PluginKind,
  baseDir: string,
  builtins: Readonly<Record<string, unknown>> = {},
): string[] {
  const found = new Set(Object.keys(builtins));
  const dirs = [
    ...(createRequire(path.join(baseDir, 'noop.js')).resolve.paths('x') ?? []),
    ...(createRequire(import.meta.url).resolve.paths('x') ?? []),
  ];
  for (const dir of dirs) {
    let names: string[];
    try {
      names = fs.readdirSync(path.join(dir, '@kiln'));
    } catch {
      continue;
    }
    for (const n of names) if (n.startsWith(`${kind}-`)) found.add(n.slice(kind.length + 1));
  }
  return [...found].sort();
}

function resolveModule(spec: string, opts: LoadPluginOptions): { file: string; request: string } {
  const { kind, baseDir } = opts;
  if (isPathSpec(spec)) {
    const file = path.resolve(baseDir, spec);
    if (!fs.existsSync(file)) {
      throw KILN_ERR_PLUGIN_NOT_FOUND(spec, kind, file, availablePlugins(kind, baseDir, opts.builtins));
    }
    return { file, request: file };
  }
  const request = SHORT_NAME.test(spec) ? packageForShortName(kind, spec) : spec;
  for (const from of [path.join(baseDir, 'noop.js'), import.meta.url]) {
    try {
      return { file: createRequire(from).resolve(request), request };
    } catch (err) {
      if (!isNotFound(err, request)) throw KILN_ERR_PLUGIN_BROKEN(spec, (err as Error).message);
    }
  }
  throw KILN_ERR_PLUGIN_NOT_FOUND(
    spec,
    kind,
    `package ${request} from ${baseDir}`,
    availablePlugins(kind, baseDir, opts.builtins),
  );
}

function checkShape(spec: string, kind: PluginKind, d: unknown): PluginDescriptor<unknown> {
  if (!isBranded(d)) {
    throw KILN_ERR_PLUGIN_INVALID(spec, 'its default export was not made with definePlugin');
  }
  const desc = d as PluginDescriptor<unknown>;
  if (desc.apiVersion !== PLUGIN_API_VERSION) {
    throw KILN_ERR_PLUGIN_API_VERSION(spec, desc.apiVersion, PLUGIN_API_VERSION);
  }
  if (typeof desc.name !== 'string' || !desc.name) throw KILN_ERR_PLUGIN_INVALID(spec, 'it has no name');
  if (desc.kind !== kind) {
    throw KILN_ERR_PLUGIN_INVALID(
      spec,
      `it is a ${String(desc.kind)} plugin, but a ${kind} plugin is needed here`,
    );
  }
  if (typeof desc.register !== 'function') throw KILN_ERR_PLUGIN_INVALID(spec, 'it has no register function');
  if (desc.configSchema?.type !== 'object' || typeof desc.configSchema.properties !== 'object') {
    throw KILN_ERR_PLUGIN_INVALID(spec, 'its configSchema is not an object schema');
  }
  return desc;
}

export async function loadPlugin(opts: LoadPluginOptions): Promise<LoadedPlugin> {
  const { spec, kind, container } = opts;
  let descriptor: unknown;
  let source = 'builtin';
  const builtin = opts.builtins && Object.hasOwn(opts.builtins, spec) ? opts.builtins[spec] : undefined;
  if (builtin) {
    descriptor = builtin;
  } else {
    const { file } = resolveModule(spec, opts);
    source = file;
    try {
      const mod = (await import(pathToFileURL(file).href)) as { default?: unknown };
      descriptor = mod.default;
    } catch (err) {
      throw KILN_ERR_PLUGIN_BROKEN(spec, (err as Error).message);
    }
  }
  const desc = checkShape(spec, kind, descriptor);
  let config: unknown;
  try {
    config = validateConfig(desc.configSchema, opts.config);
  } catch (err) {
    if (err instanceof ConfigSchemaError) throw KILN_ERR_PLUGIN_CONFIG(desc.name, err.message);
    throw err;
  }
  const token = TOKEN_FOR_KIND[kind];
  const before = container.isRegistered(token, false) ? container.resolveAll(token).length : 0;
  try {
    await desc.register(container, config);
  } catch (err) {
    throw err instanceof KilnError ? err : KILN_ERR_PLUGIN_REGISTER(desc.name, (err as Error).message);
  }
  const after = container.isRegistered(token, false) ? container.resolveAll(token).length : 0;
  if (after <= before) {
    throw KILN_ERR_PLUGIN_REGISTER(
      desc.name,
      `it registered no ${kind} (register it under the ${kind} token)`,
    );
  }
  return { name: desc.name, kind, source, config };
}
