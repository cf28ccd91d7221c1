/** Helpers for a sandbox's outputs: in-memory ones for simple plugins, and reading them back whole. */
import { Readable } from 'node:stream';
import type { SandboxOutput, SandboxResult } from './sandbox.js';

/** An output already in memory (for a plugin whose outputs are small or come over a socket). */
export function outputFromBuffer(data: Buffer): SandboxOutput {
  return { size: data.length, stream: () => Readable.from([data]) };
}

/** Reads one output whole; rejects when the stream does not give exactly `size` bytes. */
export async function readOutput(output: SandboxOutput): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const chunk of output.stream()) {
    chunks.push(chunk as Buffer);
    n += (chunk as Buffer).length;
  }
  if (n !== output.size) throw new Error(`output stream gave ${n} bytes, not ${output.size}`);
  return Buffer.concat(chunks, n);
}

export type BufferedResult = Omit<SandboxResult, 'outputs' | 'release'> & {
  readonly outputs: ReadonlyMap<string, Buffer>;
};

/** The result with every output read into memory, released: for tests and small jobs. */
export async function bufferedResult(result: SandboxResult): Promise<BufferedResult> {
  try {
    const outputs = new Map<string, Buffer>();
    for (const [p, o] of result.outputs) outputs.set(p, await readOutput(o));
    const { release: _, ...rest } = result;
    return { ...rest, outputs };
  } finally {
    await result.release();
  }
}
