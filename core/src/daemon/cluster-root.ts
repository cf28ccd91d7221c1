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
import type { DistConfig } from '../cluster/client-config.js';
import type { Logger } from '../log.js';
import type { Stats } from '../stats/stats.js';
import { ArchiveResolver } from '../toolchain/archive-resolver.js';
import { ToolchainCache } from '../toolchain/toolchain-cache.js';
import { RemoteCompiler } from './remote-compile.js';

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
  for (const spec of ctx.dist.resolvers) {
    await loadPlugin({
      spec,
      kind: PluginKind.RESOLVER,
      config: ctx.dist.resolver_config[spec],
      container: scope,
      baseDir: ctx.configDir,
    });
  }
  // Last: the configured resolvers are asked first for a compiler they handle.
  const toolchains = new ToolchainCache(path.join(ctx.cacheDir, 'toolchains'), ctx.dist.toolchain_cache_size);
  scope.register(TOOLCHAIN_RESOLVER, { useValue: new ArchiveResolver({ cache: toolchains }) });
  return new RemoteCompiler(ctx.dist, scope.resolveAll(TOOLCHAIN_RESOLVER), ctx.stats, ctx.log);
}
