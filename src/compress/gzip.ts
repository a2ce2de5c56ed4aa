import { createHash, type Hash } from 'node:crypto';
import { createRequire } from 'node:module';
import { Transform, Writable, type Readable, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { crc32 } from 'node:zlib';
import { TarpushError } from '../errors.js';
import type { Digest } from '../image/digest.js';
import { DICTIONARY_SIZE, INCOMPRESSIBLE_RULE } from './deflate-block.js';
import { sharedPool, type WorkerPool } from './pool.js';

/**
 * Deterministic parallel gzip. The input is cut into fixed-size blocks, each deflated
 * independently (in worker threads) with the previous block's last 32 KiB as preset dictionary,
 * non-final blocks ending in a sync flush so they are byte-aligned and simply concatenate. The
 * output therefore depends only on the input bytes and the settings — never on chunking, worker
 * count, machine or Node version — which is what lets tarpush print a layer digest offline that
 * the registry will later agree with.
 */
export interface GzipSettings {
  /** Deflate level, 1-9. */
  level: number;
  /** Input bytes per independently compressed block. */
  blockSize: number;
  /**
   * Store instead of deflate the blocks that look already compressed (a pinned, integer-exact
   * byte-histogram test; see deflate-block.ts). Absent means false.
   */
  storeIncompressible?: boolean;
}

/**
 * Level 1, measured on one core of the 2-core reference machine (pako 3.0.3, 1 MiB blocks, MB
 * per CPU-second, output/input): source and docs 76 MB/s at 0.243 against 33 MB/s at 0.199 for
 * level 6; ELF binaries 44 MB/s at 0.438 against 24 MB/s at 0.403; random data 27 MB/s either way
 * (>1 GB/s once stored, hence storeIncompressible). Level 1 costs 4-20% in size for 1.8-2.3x the
 * speed, which is what keeps a push of a docker-save archive within reach of skopeo's native
 * parallel gzip. Larger blocks gain <0.1% ratio; 1 MiB keeps per-stream memory small.
 */
export const DEFAULT_GZIP_SETTINGS: Readonly<GzipSettings> = Object.freeze({
  level: 1,
  blockSize: 1024 * 1024,
  storeIncompressible: true,
});

export const PAKO_VERSION: string = (createRequire(import.meta.url)('pako/package.json') as { version: string }).version;

/**
 * Names everything that determines the output bytes, for the compression cache. Changing any
 * pinned deflate parameter (deflate-block.ts) or the framing here must change this string.
 */
export function settingsKey(s: GzipSettings): string {
  checkSettings(s);
  const store = s.storeIncompressible ? `-si${INCOMPRESSIBLE_RULE}` : '';
  return `gzip-pako${PAKO_VERSION}-l${s.level}-b${s.blockSize}${store}`;
}

export function checkSettings(s: GzipSettings): void {
  if (!Number.isInteger(s.level) || s.level < 1 || s.level > 9) {
    throw new TarpushError('usage', `gzip level must be a whole number from 1 to 9, not ${s.level}`);
  }
  if (!Number.isInteger(s.blockSize) || s.blockSize < DICTIONARY_SIZE || s.blockSize > 64 * 1024 * 1024) {
    throw new TarpushError('usage', `gzip block size must be from ${DICTIONARY_SIZE} bytes to 64 MiB, not ${s.blockSize}`);
  }
}

/** ID1 ID2, CM=deflate, FLG=0, MTIME=0, XFL=0, OS=255 (unknown): nothing about the machine leaks in. */
const GZIP_HEADER = Buffer.from([0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff]);

export interface GzipStreamOptions {
  settings?: GzipSettings;
  pool?: WorkerPool;
  /**
   * Blocks compressing at once for this stream: bounds its memory. The default, one per worker
   * plus one queued, keeps the workers busy (more only added RSS in bench/digest.ts).
   */
  maxInFlight?: number;
  /** Also compute sha256 of the input (the layer's diff_id), read from `diffId` after the end. */
  hashInput?: boolean;
}

interface Slot {
  done: boolean;
  output?: Buffer;
  error?: unknown;
}

export class GzipStream extends Transform {
  readonly settings: GzipSettings;
  private readonly pool: WorkerPool;
  private readonly maxInFlight: number;
  private readonly inputHash?: Hash;
  private block: Buffer;
  /** Block and dictionary buffers back from workers, reused so steady state allocates no input buffers. */
  private readonly spareBlocks: ArrayBuffer[] = [];
  private readonly spareDictionaries: ArrayBuffer[] = [];
  private fill = 0;
  private dictionary?: Buffer;
  private crc = 0;
  private total = 0;
  private headerSent = false;
  private readonly slots: Slot[] = [];
  private failure?: unknown;
  private wake?: () => void;
  private inputDigest?: Digest;

  constructor(opts: GzipStreamOptions = {}) {
    super();
    this.settings = { ...(opts.settings ?? DEFAULT_GZIP_SETTINGS) };
    checkSettings(this.settings);
    this.pool = opts.pool ?? sharedPool();
    this.maxInFlight = Math.max(1, opts.maxInFlight ?? this.pool.size + 1);
    if (opts.hashInput) this.inputHash = createHash('sha256');
    this.block = newBlock(this.settings.blockSize);
  }

  /** Bytes of input consumed so far (the whole input once the stream has ended). */
  get uncompressedSize(): number {
    return this.total + this.fill;
  }

  /** sha256 of the input; only with `hashInput`, after the end. */
  get diffId(): Digest {
    if (!this.inputDigest) throw new Error('GzipStream: diffId read before end of stream or without hashInput');
    return this.inputDigest;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.consume(chunk).then(() => cb(), cb);
  }

  override _flush(cb: TransformCallback): void {
    this.finish().then(() => cb(), cb);
  }

  override _destroy(err: Error | null, cb: (error?: Error | null) => void): void {
    // Results still arriving from workers are dropped by pushFinished(); wake a waiter so it unwinds.
    this.failure ??= err ?? new Error('gzip stream destroyed');
    this.wakeUp();
    cb(err);
  }

  private async consume(chunk: Buffer): Promise<void> {
    this.inputHash?.update(chunk);
    const size = this.settings.blockSize;
    let off = 0;
    while (off < chunk.length) {
      // A full block is sent only once more input exists, so the final block is always the one
      // holding the last byte whatever the chunking (or the empty block, for empty input).
      if (this.fill === size) await this.dispatch(false);
      const n = Math.min(chunk.length - off, size - this.fill);
      chunk.copy(this.block, this.fill, off, off + n);
      this.fill += n;
      off += n;
    }
  }

  private async finish(): Promise<void> {
    await this.dispatch(true);
    await this.waitBelow(1);
    const trailer = Buffer.alloc(8);
    trailer.writeUInt32LE(this.crc >>> 0, 0);
    trailer.writeUInt32LE(this.total % 0x100000000, 4);
    this.push(trailer);
    if (this.inputHash) this.inputDigest = `sha256:${this.inputHash.digest('hex')}`;
  }

  private async dispatch(final: boolean): Promise<void> {
    const length = this.fill;
    const block = this.block;
    const view = block.subarray(0, length);
    this.crc = crc32(view, this.crc);
    this.total += length;
    this.fill = 0;
    const dictionary = this.dictionary;
    if (!final) {
      const dict = this.reuse(this.spareDictionaries, DICTIONARY_SIZE);
      block.copy(dict, 0, length - DICTIONARY_SIZE, length);
      this.dictionary = dict;
      this.block = this.reuse(this.spareBlocks, this.settings.blockSize);
    }
    const slot: Slot = { done: false };
    this.slots.push(slot);
    this.pool.run({
        block: view,
        dictionary,
        final,
        level: this.settings.level,
        storeIncompressible: this.settings.storeIncompressible === true,
        transfer: true,
      }).then(
      (result) => {
        slot.output = result.output;
        slot.done = true;
        if (this.spareBlocks.length < 2) this.spareBlocks.push(result.block);
        if (result.dictionary && this.spareDictionaries.length < 2) this.spareDictionaries.push(result.dictionary);
        this.pushFinished();
      },
      (error: unknown) => {
        slot.error = error;
        slot.done = true;
        this.pushFinished();
      },
    );
    await this.waitBelow(this.maxInFlight);
  }

  private reuse(spares: ArrayBuffer[], size: number): Buffer {
    const spare = spares.pop();
    return spare && spare.byteLength === size ? Buffer.from(spare) : newBlock(size);
  }

  /** Pushes finished blocks in input order, as soon as each one and all before it are done. */
  private pushFinished(): void {
    while (this.slots.length > 0 && this.slots[0]!.done) {
      const slot = this.slots.shift()!;
      if (slot.error !== undefined) {
        this.failure ??= slot.error;
        break;
      }
      if (this.destroyed) continue;
      if (!this.headerSent) {
        this.headerSent = true;
        this.push(GZIP_HEADER);
      }
      this.push(slot.output!);
    }
    this.wakeUp();
  }

  private wakeUp(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  private async waitBelow(limit: number): Promise<void> {
    while (this.slots.length >= limit && this.failure === undefined) {
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
    if (this.failure !== undefined) throw this.failure;
  }
}

/** A buffer with its own ArrayBuffer, so it can be moved to a worker without copying. */
function newBlock(size: number): Buffer {
  return Buffer.allocUnsafeSlow(size);
}

export function createGzipStream(opts: { settings?: GzipSettings; pool?: WorkerPool } = {}): GzipStream {
  return new GzipStream(opts);
}

export interface GzipDescription {
  /** sha256 of the gzip output (the layer blob digest). */
  digest: Digest;
  size: number;
  /** sha256 of the input (the layer diff_id). */
  diffId: Digest;
  uncompressedSize: number;
}

/** Compresses `input` only to learn the digests and sizes; the compressed bytes are discarded. */
export async function gzipDescribe(
  input: Readable,
  opts: { settings?: GzipSettings; pool?: WorkerPool } = {},
): Promise<GzipDescription> {
  const gz = new GzipStream({ ...opts, hashInput: true });
  const outHash = createHash('sha256');
  let size = 0;
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      outHash.update(chunk);
      size += chunk.length;
      cb();
    },
  });
  await pipeline(input, gz, sink);
  return { digest: `sha256:${outHash.digest('hex')}`, size, diffId: gz.diffId, uncompressedSize: gz.uncompressedSize };
}
