/** `kiln --dist-status` and `kiln --dist-test-conn`: the client's view of its cluster. */

import type { DistConfig } from '../cluster/client-config.js';
import type { ClientConfig } from '../config.js';
import { KILN_ERR_DIST_UNAVAILABLE, KILN_ERR_USAGE } from '../errors.js';
import { formatDistStatus } from './dist-status-text.js';

function distConfig(config: ClientConfig): DistConfig {
  if (!config.dist)
    throw KILN_ERR_USAGE('no cluster configured: add a [dist] table with scheduler_url to the config');
  return config.dist;
}

async function client(dist: DistConfig) {
  // Loaded only for these commands: the CLI's other commands never talk to a cluster.
  const { DistClient, DistError } = await import('../cluster/dist-client.js');
  if (dist.insecure) process.stderr.write('kiln: [dist] insecure = true: plain http allowed\n');
  return { c: new DistClient(dist), DistError };
}

/** The cluster's pools, workers and recent jobs: aligned text, or with `json` the scheduler's JSON. */
export async function distStatus(config: ClientConfig, json = false): Promise<number> {
  const dist = distConfig(config);
  const { c, DistError } = await client(dist);
  try {
    const status = await c.status();
    process.stdout.write(
      json
        ? `${JSON.stringify({ schedulerUrl: dist.scheduler_url, ...status }, null, 2)}\n`
        : formatDistStatus(dist.scheduler_url, status),
    );
    return 0;
  } catch (err) {
    if (err instanceof DistError) throw KILN_ERR_DIST_UNAVAILABLE(err.message);
    throw err;
  } finally {
    await c.close();
  }
}

/** Checks the scheduler and every worker can be reached and accept our credentials. */
export async function distTestConn(config: ClientConfig): Promise<number> {
  const dist = distConfig(config);
  const { c, DistError } = await client(dist);
  const why = (err: unknown) => (err instanceof DistError ? err.message : (err as Error).message);
  let failures = 0;
  try {
    let status: Awaited<ReturnType<typeof c.status>>;
    try {
      status = await c.status();
    } catch (err) {
      process.stdout.write(`scheduler ${dist.scheduler_url}: FAILED: ${why(err)}\n`);
      return 1;
    }
    process.stdout.write(
      `scheduler ${dist.scheduler_url}: ok (${status.totals.workers} workers, ${status.totals.pools} pools)\n`,
    );
    for (const pool of status.pools) {
      for (const w of pool.workers) {
        try {
          await c.health(w.url);
          const probe = await c.probeToken(w.id);
          await c.ping(w.url, probe.jobId, probe.jobToken);
          process.stdout.write(`worker ${w.id} ${w.url} (${w.hostTriple}): ok\n`);
        } catch (err) {
          failures++;
          process.stdout.write(`worker ${w.id} ${w.url} (${w.hostTriple}): FAILED: ${why(err)}\n`);
        }
      }
    }
    return failures ? 1 : 0;
  } finally {
    await c.close();
  }
}
