/**
 * s3rver (an S3 API server on the file system) for tests, on 127.0.0.1 with a port the OS picks
 * and its own temp directory. What it does not check: SigV4 signatures (any secret key passes;
 * only the access key id must be its one account's, "S3RVER"), and requests without any
 * Authorization header are served as if anonymous access were allowed.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { packageBin } from '../prereq.js';
import { startChild } from './node-child.js';

/** The only account s3rver knows. */
export const S3RVER_KEY_ID = 'S3RVER';
export const S3RVER_SECRET = 'S3RVER';

export interface S3Server {
  /** http://127.0.0.1:PORT */
  readonly endpoint: string;
  readonly port: number;
  /** Its data directory: a bucket is a folder, an object a file inside it. */
  readonly dir: string;
  /** SIGTERM, then SIGKILL; removes its directory. */
  stop(): Promise<void>;
  /** SIGKILL, keeping the directory (a crash). */
  kill(): Promise<void>;
}

/** Whether s3rver is installed; under CI=true its absence throws instead. */
export function haveS3rver(): boolean {
  return packageBin('s3rver', 's3rver') !== undefined;
}

/** Starts s3rver with `buckets` made; `port` 0 lets the OS choose. */
export async function startS3rver(buckets: readonly string[], port = 0): Promise<S3Server> {
  const bin = packageBin('s3rver', 's3rver');
  if (!bin) throw new Error('s3rver is not installed (npm ci installs it with @kiln/test)');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-s3rver-'));
  const child = await startChild(
    's3rver',
    [
      bin,
      '--silent',
      '--address',
      '127.0.0.1',
      '--port',
      String(port),
      '--directory',
      dir,
      '--no-vhost-buckets',
      ...buckets.flatMap((b) => ['--configure-bucket', b]),
    ],
    /S3rver listening on 127\.0\.0\.1:(\d+)/,
  );
  const actual = Number(child.ready[1]);
  return {
    endpoint: `http://127.0.0.1:${actual}`,
    port: actual,
    dir,
    stop: async () => {
      await child.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    },
    kill: () => child.kill(),
  };
}
