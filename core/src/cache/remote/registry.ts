/**
 * The remote cache backends kiln knows, by `type`. Each module is small and imports its client
 * library only in `create`; adding a backend is one file and one line here.
 */
import { azureBackend } from './azure.js';
import type { BackendModule } from './backend.js';
import { httpBackend } from './http.js';
import { memcachedBackend } from './memcached.js';
import { redisBackend } from './redis.js';

import { s3Backend } from './s3.js';

export const BACKENDS: readonly BackendModule[] = [
  redisBackend,
  memcachedBackend,
  httpBackend,
  s3Backend,
  azureBackend,
];

export function backendByType(type: string): BackendModule | undefined {
  return BACKENDS.find((b) => b.type === type);
}

export function backendByScheme(scheme: string): BackendModule | undefined {
  return BACKENDS.find((b) => b.schemes.includes(scheme));
}
