import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { TarpushError } from '../errors.js';
import type { BlockResult, BlockTask } from './worker.js';

/** One block to deflate. */
export interface DeflateJob {
  block: Uint8Array;
  /** The last 32 KiB of the previous block's input (absent for the first block). */
  dictionary?: Uint8Array;
  final: boolean;
  level: number;
  /** Store (level 0) blocks that look already compressed; see deflate-block.ts. */
  storeIncompressible?: boolean;
  /**
   * The caller owns the whole ArrayBuffers behind `block` and `dictionary` and gives them up:
   * they are moved to the worker instead of copied (and are unusable afterwards).
   */
  transfer?: boolean;
}

/** The compressed bytes, and the job's buffers handed back for reuse. */
export interface DeflateOutput {
  output: Buffer;
  block: ArrayBuffer;
  dictionary?: ArrayBuffer;
}

interface Pending {
  task: BlockTask;
  transfer: ArrayBuffer[];
  resolve(out: DeflateOutput): void;
  reject(e: unknown): void;
}

interface Slot {
  worker: Worker;
  busy?: Pending;
}

const WORKER_URL = new URL('./worker.js', import.meta.url);
const WORKER_YOUNG_GENERATION_MB = 2;

/**
 * Default ceiling on workers: each costs ~15 MiB of RSS, and 8 already compress faster than most
 * disks and links deliver. TARPUSH_WORKERS can go higher.
 */
export const MAX_DEFAULT_WORKERS = 8;

/** Worker count: TARPUSH_WORKERS when set to a positive integer, else one per available core (at most 8). */
export function defaultWorkerCount(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.TARPUSH_WORKERS;
  if (raw !== undefined && raw.trim() !== '') {
    const n = Number(raw);
    if (!Number.isInteger(n) || n < 1 || n > 256) {
      throw new TarpushError('usage', `TARPUSH_WORKERS must be a whole number from 1 to 256, not "${raw}"`);
    }
    return n;
  }
  return Math.max(1, Math.min(MAX_DEFAULT_WORKERS, availableParallelism()));
}

/**
 * Deflate workers shared by every compression in the process, so that compressing several layers
 * at once still uses one thread per core. Workers start lazily and are unref'd while idle, so an
 * idle pool never keeps the process alive; a worker is ref'd only while it holds a task that some
 * caller is awaiting.
 */
export class WorkerPool {
  readonly size: number;
  private readonly slots: Slot[] = [];
  private readonly queue: Pending[] = [];
  private nextId = 1;
  private closed = false;

  constructor(size: number = defaultWorkerCount()) {
    if (!Number.isInteger(size) || size < 1) throw new TarpushError('internal', `invalid worker pool size ${size}`);
    this.size = size;
  }

  run(job: DeflateJob): Promise<DeflateOutput> {
    if (this.closed) return Promise.reject(new TarpushError('internal', 'compression worker pool is closed'));
    const move = job.transfer === true;
    const block = move ? wholeBuffer(job.block) : copyOf(job.block);
    const transfers = [block];
    let dictionary: ArrayBuffer | null = null;
    if (job.dictionary && job.dictionary.length > 0) {
      dictionary = move ? wholeBuffer(job.dictionary) : copyOf(job.dictionary);
      transfers.push(dictionary);
    }
    return new Promise<DeflateOutput>((resolve, reject) => {
      this.queue.push({
        task: {
          id: this.nextId++,
          block,
          blockLength: job.block.length,
          dictionary,
          dictionaryLength: dictionary ? job.dictionary!.length : 0,
          final: job.final,
          level: job.level,
          storeIncompressible: job.storeIncompressible === true,
        },
        transfer: transfers,
        resolve,
        reject,
      });
      this.pump();
    });
  }

  /** Stops all workers; tasks not yet finished are rejected. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const err = new TarpushError('internal', 'compression worker pool was closed');
    for (const p of this.queue.splice(0)) p.reject(err);
    const slots = this.slots.splice(0);
    for (const s of slots) s.busy?.reject(err);
    await Promise.all(slots.map((s) => s.worker.terminate().catch(() => undefined)));
  }

  private pump(): void {
    while (this.queue.length > 0) {
      let slot = this.slots.find((s) => !s.busy);
      if (!slot) {
        if (this.slots.length >= this.size) return;
        slot = this.spawn();
      }
      const pending = this.queue.shift()!;
      slot.busy = pending;
      slot.worker.ref();
      try {
        slot.worker.postMessage(pending.task, pending.transfer);
      } catch (e) {
        slot.busy = undefined;
        slot.worker.unref();
        pending.reject(new TarpushError('internal', `cannot hand a block to a compression worker: ${(e as Error).message}`));
      }
    }
  }

  private spawn(): Slot {
    // No inherited execArgv: flags such as --input-type make a worker fail to start. A small young
    // generation makes the worker collect its short-lived per-block deflate state often; with the
    // default one, 2 workers held ~20 MiB more RSS at equal speed (measured with bench/digest.ts).
    const worker = new Worker(WORKER_URL, { execArgv: [], resourceLimits: { maxYoungGenerationSizeMb: WORKER_YOUNG_GENERATION_MB } });
    worker.unref();
    const slot: Slot = { worker };
    this.slots.push(slot);
    worker.on('message', (msg: BlockResult) => {
      const pending = slot.busy;
      slot.busy = undefined;
      worker.unref();
      if (pending && pending.task.id === msg.id) {
        if (msg.ok) {
          pending.resolve({ output: Buffer.from(msg.output), block: msg.block, dictionary: msg.dictionary ?? undefined });
        }
        else pending.reject(new TarpushError('internal', `compression worker failed: ${msg.message}`));
      }
      this.pump();
    });
    const lost = (why: string) => {
      const i = this.slots.indexOf(slot);
      if (i < 0) return;
      this.slots.splice(i, 1);
      const pending = slot.busy;
      slot.busy = undefined;
      pending?.reject(new TarpushError('internal', `compression worker ${why}`));
      if (!this.closed) this.pump();
    };
    worker.on('error', (e) => lost(`failed: ${e.message}`));
    worker.on('exit', (code) => lost(`exited unexpectedly (code ${code})`));
    return slot;
  }
}

function wholeBuffer(view: Uint8Array): ArrayBuffer {
  if (view.byteOffset !== 0 || !(view.buffer instanceof ArrayBuffer)) {
    throw new TarpushError('internal', 'a transferred block must start at the beginning of its own ArrayBuffer');
  }
  return view.buffer;
}

function copyOf(view: Uint8Array): ArrayBuffer {
  const copy = new Uint8Array(view.byteLength);
  copy.set(view);
  return copy.buffer;
}

let shared: WorkerPool | undefined;

/** The process-wide pool, created on first use. */
export function sharedPool(): WorkerPool {
  shared ??= new WorkerPool();
  return shared;
}

/** Closes the process-wide pool (a later sharedPool() starts a new one). */
export async function closeSharedPool(): Promise<void> {
  const p = shared;
  shared = undefined;
  await p?.close();
}
