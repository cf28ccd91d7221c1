/**
 * The daemon's composition root for the cluster, loaded only when `[dist]` is configured: a
 * tsyringe container with the context resolver plugins may inject, the configured resolver
 * plugins, then the built-in "archive" resolver. Only here is anything resolved from a container;
 * the RemoteCompiler receives its resolvers through its constructor.
 */
import 'reflect-metadata';
import fs from 'node:fs';
import path from 'node:path';
import {
  HOST_TRIPLE,
  hostTriple,
  loadPlugin,
  PLUGIN_LOGGER,
  PLUGIN_WORK_DIR,
  PluginKind,
  TOOLCHAIN_RESOLVER,
} from '@kiln/plugins';
import { container } from 'tsyringe';
import { type DistConfig, toolchainDir } from '../cluster/client-config.js';
import type { Logger } from '../log.js';
import type { Stats } from '../stats/stats.js';
import { ArchiveResolver } from '../toolchain/archive-resolver.js';
import { ToolchainCache } from '../toolchain/toolchain-cache.js';
import { RemoteCompiler } from './remote-compile.js';

/** The resolver plugin that takes `[[dist.toolchains]]`, by its short name. */
const PATH_OVERRIDE = 'path-override';

export interface ClusterContext {
  readonly dist: DistConfig;
  readonly cacheDir: string;
  /** Where relative plugin paths are resolved from: the config file's directory. */
  readonly configDir: string;
  readonly stats: Stats;
  readonly log: Logger;
}

export async function createRemoteCompiler(ctx: ClusterContext): Promise<RemoteCompiler> {
  const scope = container.createChildContainer();
  const workDir = path.join(ctx.cacheDir, 'plugins');
  fs.mkdirSync(workDir, { recursive: true });
  scope.register(PLUGIN_WORK_DIR, { useValue: workDir });
  scope.register(PLUGIN_LOGGER, { useValue: ctx.log });
  scope.register(HOST_TRIPLE, { useValue: hostTriple() });
  const resolvers = [...ctx.dist.resolvers];
  // sccache-dist's [[dist.toolchains]] belong to the path-override resolver: loaded first when they
  // are given and it is not listed, so that a mapped compiler is never packed by another resolver.
  if (ctx.dist.toolchains.length > 0 && !resolvers.includes(PATH_OVERRIDE)) resolvers.unshift(PATH_OVERRIDE);
  for (const spec of resolvers) {
    let config = ctx.dist.resolver_config[spec];
    if (spec === PATH_OVERRIDE && ctx.dist.toolchains.length > 0) {
      const table = (config ?? {}) as { toolchains?: unknown };
      const own = Array.isArray(table.toolchains) ? table.toolchains : [];
      config = { ...table, toolchains: [...ctx.dist.toolchains, ...own] };
    }
    await loadPlugin({ spec, kind: PluginKind.RESOLVER, config, container: scope, baseDir: ctx.configDir });
  }
  // Last: the configured resolvers are asked first for a compiler they handle.
  const toolchains = new ToolchainCache(toolchainDir(ctx.cacheDir, ctx.dist), ctx.dist.toolchain_cache_size);
  scope.register(TOOLCHAIN_RESOLVER, { useValue: new ArchiveResolver({ cache: toolchains }) });
  return new RemoteCompiler(ctx.dist, scope.resolveAll(TOOLCHAIN_RESOLVER), ctx.stats, ctx.log);
}
