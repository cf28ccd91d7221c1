/**
 * The one compile lifecycle (daemon/lifecycle.ts) with a family made of plain functions: the order
 * of its steps, what it counts, and when it falls back. The real families are tested end to end
 * (test/cache.test.ts, test/rust.test.ts, test/dist-e2e.test.ts, test/dist-rust.test.ts); the
 * RemoteCompiler here is a stand-in object, since the cluster is not what these cases are about.
 */
import os from 'node:os';
import { describe, expect, it } from 'vitest';
import type { CachedResult } from '../src/cache/entries.js';
import { Action, type Response } from '../src/client/protocol.js';
import { type FamilyCompile, getCachedOrCompile, type Lookup } from '../src/daemon/lifecycle.js';
import type { RemoteCompiler, RemoteOutcome, RemotePlan } from '../src/daemon/remote-compile.js';
import { commonDirectory, onlyArtifactNotifications } from '../src/daemon/rust-remote-plan.js';
import { Stats } from '../src/stats/stats.js';

const result = (name: string): CachedResult => ({
  stdout: Buffer.from(name),
  stderr: Buffer.alloc(0),
  files: new Map(),
  meta: {},
});
const answer = (text: string): Response => ({
  action: Action.RESULT,
  exitCode: 0,
  stdout: Buffer.from(text),
  stderr: Buffer.alloc(0),
});
const said = (r: Response) => (r.action === Action.RESULT ? r.stdout.toString() : r.action);

/** A family whose steps log themselves. */
function family(over: Partial<FamilyCompile> & { candidates?: Lookup[] }, log: string[]): FamilyCompile {
  const { candidates = [], ...rest } = over;
  return {
    language: 'Test',
    async *lookup() {
      for (const c of candidates) {
        log.push('lookup');
        yield c;
      }
    },
    replay: (r) => {
      log.push(`replay ${r.stdout}`);
      return r.stdout.toString() === 'broken' ? undefined : answer(`hit ${r.stdout}`);
    },
    local: async () => {
      log.push('local');
      return { stdout: Buffer.alloc(0), stderr: Buffer.alloc(0), success: answer('compiled') };
    },
    store: async () => void log.push('store'),
    ...rest,
  };
}

const stats = () => new Stats(os.tmpdir());

describe('getCachedOrCompile', () => {
  it('replays the first candidate that can be written, counting it under its counter', async () => {
    const log: string[] = [];
    const s = stats();
    const onHit = async () => void log.push('onHit');
    const f = family(
      {
        candidates: [
          { result: result('broken'), counter: 'hitsDirect' },
          { result: result('b'), counter: 'hitsPreprocessed', onHit },
        ],
      },
      log,
    );
    expect(said(await getCachedOrCompile(f, s, undefined))).toBe('hit b');
    expect(log).toEqual(['lookup', 'replay broken', 'lookup', 'replay b', 'onHit']);
    expect(s.pending.hitsPreprocessed).toBe(1);
    expect(s.pending.hitsDirect).toBe(0);
    expect(s.pending.languages.Test).toEqual({ hits: 1, misses: 0, failed: 0, uncached: 0 });
  });

  it('a family answer or a refused replay ends the call; a miss compiles, counts and stores', async () => {
    const log: string[] = [];
    const s = stats();
    const own = family({ candidates: [{ response: answer('own') }] }, log);
    expect(said(await getCachedOrCompile(own, s, undefined))).toBe('own');
    const refused = family(
      { candidates: [{ result: result('a'), counter: 'hitsDirect' }], refuseReplay: () => answer('refused') },
      log,
    );
    expect(said(await getCachedOrCompile(refused, s, undefined))).toBe('refused');
    expect(log).toEqual(['lookup', 'lookup']);
    log.length = 0;
    expect(said(await getCachedOrCompile(family({}, log), s, undefined))).toBe('compiled');
    expect(log).toEqual(['local', 'store']);
    expect(s.pending.misses).toBe(1);
    // Counted as uncached already: stored, not a miss.
    const quiet = family(
      {
        local: async () => ({
          stdout: Buffer.alloc(0),
          stderr: Buffer.alloc(0),
          success: answer('q'),
          miss: false,
        }),
      },
      log,
    );
    await getCachedOrCompile(quiet, s, undefined);
    expect(s.pending.misses).toBe(1);
  });

  it('remote first when the family has a plan; local when the cluster gives nothing back', async () => {
    const log: string[] = [];
    const s = stats();
    const plan = { program: '/bin/cc' } as unknown as RemotePlan;
    let outcome: RemoteOutcome | undefined = {
      stdout: Buffer.from('r'),
      stderr: Buffer.alloc(0),
      outputs: new Map(),
      workerId: 'w',
    };
    const remote = {
      run: async () => {
        log.push('remote');
        return outcome;
      },
      keepLocal: (reason: string) => void log.push(`keepLocal ${reason}`),
    } as unknown as RemoteCompiler;
    const f = family(
      {
        remote: () => ({
          plan,
          accept: (o) => {
            log.push('accept');
            return { stdout: o.stdout, stderr: o.stderr, success: answer('remote') };
          },
        }),
      },
      log,
    );
    expect(said(await getCachedOrCompile(f, s, remote))).toBe('remote');
    expect(log).toEqual(['remote', 'accept', 'store']);
    log.length = 0;
    outcome = undefined;
    expect(said(await getCachedOrCompile(f, s, remote))).toBe('compiled');
    expect(log).toEqual(['remote', 'local', 'store']);
    log.length = 0;
    const stays = family({ remote: async () => ({ local: 'crate type proc-macro' }) }, log);
    expect(said(await getCachedOrCompile(stays, s, remote))).toBe('compiled');
    expect(log).toEqual(['keepLocal crate type proc-macro', 'local', 'store']);
    expect(s.pending.misses).toBe(3);
  });
});

describe('the Rust plan helpers', () => {
  it('finds the common directory of a job', () => {
    expect(
      commonDirectory(['/h/u/p/.', '/h/u/reg/a-1/src/lib.rs', '/h/u/p/target/debug/deps/liba.rlib']),
    ).toBe('/h/u');
    expect(commonDirectory(['/tmp/x/.', '/usr/share/cargo/registry/a/src/lib.rs'])).toBe('/');
  });

  it('replays stderr only when it holds nothing but artifact notifications', () => {
    const artifact = '{"$message_type":"artifact","artifact":"/t/liba.rmeta","emit":"metadata"}\n';
    expect(onlyArtifactNotifications(Buffer.from(artifact + artifact))).toBe(true);
    expect(onlyArtifactNotifications(Buffer.alloc(0))).toBe(true);
    expect(
      onlyArtifactNotifications(
        Buffer.from(`${artifact}{"$message_type":"diagnostic","message":"unused"}\n`),
      ),
    ).toBe(false);
    expect(onlyArtifactNotifications(Buffer.from('warning: unused variable\n'))).toBe(false);
  });
});
