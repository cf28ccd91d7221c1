/**
 * The worker's end of kiln-runner's protocol (runner/kiln-runner.c), carried over a container's
 * attach connection: Docker's stdout frames hold the runner's replies, its stdin the requests.
 */
import type { Duplex } from 'node:stream';

export interface RunnerRequest {
  readonly cwd: string;
  readonly argv: readonly string[];
  readonly env: Readonly<Record<string, string>>;
}

export interface RunnerResult {
  /** The raw wait status, or -1 when the runner could not fork. */
  readonly status: number;
  /** Whether processes of the job outlived it (they were killed). */
  readonly leftovers: boolean;
  readonly stdout: Buffer;
  readonly stderr: Buffer;
}

/** Keeps the first `max` bytes given to it. */
class Capped {
  readonly #chunks: Buffer[] = [];
  #size = 0;
  constructor(private readonly max: number) {}
  push(b: Buffer): void {
    if (this.#size >= this.max) return;
    const part = b.subarray(0, this.max - this.#size);
    this.#chunks.push(Buffer.from(part));
    this.#size += part.length;
  }
  get(): Buffer {
    return Buffer.concat(this.#chunks, this.#size);
  }
}

interface Pending {
  readonly stdout: Capped;
  readonly stderr: Capped;
  resolve(r: RunnerResult): void;
  reject(e: Error): void;
}

export class RunnerChannel {
  /** Docker's frames: 8-byte header (stream, 0, 0, 0, size BE), then the payload. */
  #docker: Buffer = Buffer.alloc(0);
  /** The runner's replies, reassembled from stdout frames. */
  #runner: Buffer = Buffer.alloc(0);
  #pending: Pending | undefined;
  #closed: Error | undefined;
  #diagnostics = '';
  readonly ready: Promise<void>;
  #onReady!: () => void;
  #onReadyFail!: (e: Error) => void;

  constructor(private readonly socket: Duplex) {
    this.ready = new Promise((resolve, reject) => {
      this.#onReady = resolve;
      this.#onReadyFail = reject;
    });
    this.ready.catch(() => {});
    socket.on('data', (chunk: Buffer) => this.#onDocker(chunk));
    const end = (err?: Error) => this.#close(err ?? new Error('the container ended its attach stream'));
    socket.on('end', () => end());
    socket.on('close', () => end());
    socket.on('error', (err) => end(err));
  }

  get closed(): boolean {
    return this.#closed !== undefined;
  }

  #close(err: Error): void {
    if (this.#closed) return;
    const why = this.#diagnostics.trim();
    this.#closed = why ? new Error(`${err.message}: ${why.slice(0, 500)}`) : err;
    this.#onReadyFail(this.#closed);
    this.#pending?.reject(this.#closed);
    this.#pending = undefined;
    this.socket.destroy();
  }

  #onDocker(chunk: Buffer): void {
    this.#docker = this.#docker.length ? Buffer.concat([this.#docker, chunk]) : chunk;
    while (this.#docker.length >= 8) {
      const size = this.#docker.readUInt32BE(4);
      if (this.#docker.length < 8 + size) break;
      const kind = this.#docker[0];
      const payload = this.#docker.subarray(8, 8 + size);
      this.#docker = this.#docker.subarray(8 + size);
      if (kind === 1) this.#onRunner(payload);
      else if (this.#diagnostics.length < 4096) this.#diagnostics += payload.toString('utf8');
    }
  }

  #onRunner(payload: Buffer): void {
    this.#runner = this.#runner.length ? Buffer.concat([this.#runner, payload]) : payload;
    while (this.#runner.length >= 5) {
      const size = this.#runner.readUInt32LE(1);
      if (this.#runner.length < 5 + size) break;
      const type = String.fromCharCode(this.#runner[0]!);
      const body = this.#runner.subarray(5, 5 + size);
      this.#runner = this.#runner.subarray(5 + size);
      const p = this.#pending;
      if (type === 'R') this.#onReady();
      else if (type === 'O') p?.stdout.push(body);
      else if (type === 'E') p?.stderr.push(body);
      else if (type === 'X' && p) {
        this.#pending = undefined;
        p.resolve({
          status: body.readInt32LE(0),
          leftovers: body.readUInt32LE(4) !== 0,
          stdout: p.stdout.get(),
          stderr: p.stderr.get(),
        });
      } else this.#close(new Error(`kiln-runner sent an unexpected reply ${JSON.stringify(type)}`));
    }
  }

  /** Runs one job; rejects when the channel breaks (the engine or the container went away). */
  run(req: RunnerRequest, maxLogBytes: number): Promise<RunnerResult> {
    if (this.#closed) return Promise.reject(this.#closed);
    if (this.#pending) return Promise.reject(new Error('kiln-runner is busy'));
    const env = Object.entries(req.env).map(([k, v]) => `${k}=${v}`);
    const strings = [req.cwd, ...req.argv, ...env].map((s) => Buffer.from(`${s}\0`));
    const head = Buffer.alloc(13);
    const size = 8 + strings.reduce((n, b) => n + b.length, 0);
    head.write('J', 0, 'latin1');
    head.writeUInt32LE(size, 1);
    head.writeUInt32LE(req.argv.length, 5);
    head.writeUInt32LE(env.length, 9);
    return new Promise((resolve, reject) => {
      this.#pending = { stdout: new Capped(maxLogBytes), stderr: new Capped(maxLogBytes), resolve, reject };
      this.socket.write(Buffer.concat([head, ...strings]));
    });
  }

  /** Kills every process of the running job (the runner reports its end as usual). */
  kill(): void {
    if (!this.#closed) this.socket.write('K');
  }

  destroy(): void {
    this.#close(new Error('closed by the worker'));
  }
}
