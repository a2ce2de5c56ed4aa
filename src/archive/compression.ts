import { Duplex, PassThrough, type Transform } from 'node:stream';
import { ReadableStream, type ReadableStreamDefaultController, type ReadableStreamDefaultReader } from 'node:stream/web';
import { createGunzip } from 'node:zlib';
import { Decompress as ZstdDecompress } from 'fzstd';
import { TarpushError } from '../errors.js';

/**
 * Whole-stream compression as found on image archives and layers: sniffing by magic bytes and
 * streaming decompressors for gzip, zstd and xz. Every decompressor reports bad input as a
 * DecompressionError (an input TarpushError naming the file), with "truncated ... data" when
 * the input ended early, so callers can pass it straight to the user.
 */

export type Compression = 'gzip' | 'zstd' | 'xz' | 'bzip2' | 'none';

/** Enough bytes to tell every supported format apart. */
export const SNIFF_BYTES = 10;

export function sniffCompression(head: Buffer): Compression {
  if (head.length >= 3 && head[0] === 0x1f && head[1] === 0x8b && head[2] === 0x08) return 'gzip';
  if (head.length >= 4 && head.readUInt32LE(0) === 0xfd2fb528) return 'zstd';
  // Skippable zstd frames (e.g. the seekable format's) may precede the first real frame.
  if (head.length >= 4 && (head.readUInt32LE(0) & 0xfffffff0) === 0x184d2a50) return 'zstd';
  if (head.length >= 6 && head.subarray(0, 6).equals(XZ_MAGIC)) return 'xz';
  // "BZh" + level alone could begin a tar entry name, so also require the first block's (or the
  // empty stream's end) magic.
  if (
    head.length >= 10 &&
    head.subarray(0, 3).toString('latin1') === 'BZh' &&
    head[3]! >= 0x31 &&
    head[3]! <= 0x39 &&
    (head.subarray(4, 10).equals(BZIP2_BLOCK_MAGIC) || head.subarray(4, 10).equals(BZIP2_EOS_MAGIC))
  ) {
    return 'bzip2';
  }
  return 'none';
}

const XZ_MAGIC = Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]);
const BZIP2_BLOCK_MAGIC = Buffer.from([0x31, 0x41, 0x59, 0x26, 0x53, 0x59]);
const BZIP2_EOS_MAGIC = Buffer.from([0x17, 0x72, 0x45, 0x38, 0x50, 0x90]);

/** Bad compressed input: corrupt, truncated or unsupported. */
export class DecompressionError extends TarpushError {
  constructor(
    where: string,
    readonly compression: Compression,
    /** The problem without the file name, e.g. "truncated gzip data". */
    readonly problem: string,
    readonly truncated: boolean,
    cause?: unknown,
  ) {
    super('input', `${where}: ${problem}`, { cause });
    this.name = 'DecompressionError';
  }
}

/**
 * A streaming decompressor: write compressed bytes, read decompressed ones. `where` names the
 * input in error messages. bzip2 is refused up front (no dependency for it; users can bunzip2).
 */
export function decompressor(kind: Compression, where = `${kind} stream`): Duplex {
  switch (kind) {
    case 'none':
      return new PassThrough();
    case 'gzip':
      return gunzip(where);
    case 'zstd':
      return new ZstdDecompressStream(where);
    case 'xz':
      return new XzDecompressStream(where);
    case 'bzip2':
      throw new DecompressionError(where, 'bzip2', 'bzip2 is not supported (decompress it first, e.g. with bunzip2)', false);
  }
}

// ---- gzip -------------------------------------------------------------------------------------

function gunzip(where: string): Transform {
  // Node's gunzip decodes concatenated (multi-member) gzip, as produced by pigz and by `cat`ing
  // .gz files; trailing zero padding after the last member is ignored.
  const stream = createGunzip({ chunkSize: 64 * 1024 });
  // zlib reports a failure by destroying itself with a bare Error; rewriting the error on its way
  // through _destroy is the one place every zlib failure passes.
  const destroyImpl = stream._destroy;
  stream._destroy = function (err, cb) {
    destroyImpl.call(this, err && !(err instanceof TarpushError) ? gzipError(err, where) : err, cb);
  };
  return stream;
}

function gzipError(err: Error & { code?: string }, where: string): DecompressionError {
  if (err.code === 'Z_BUF_ERROR' || /unexpected end of file/i.test(err.message)) {
    return new DecompressionError(where, 'gzip', 'truncated gzip data', true, err);
  }
  return new DecompressionError(where, 'gzip', `corrupt gzip data (${err.message})`, false, err);
}

// ---- zstd -------------------------------------------------------------------------------------
// fzstd does not verify zstd's optional XXH64 content checksum: corruption inside a block can
// decode to wrong bytes without an error here. Every blob tarpush reads is digest-checked
// downstream (and a decompressed archive must still index as a tar), which catches it.

/**
 * fzstd's push() decodes synchronously and hands over every block the input completes. One zstd
 * block expands to up to 128 KiB, and an RLE block is 4 bytes, so a large input chunk could emit
 * gigabytes at once. Feeding small slices and waiting for the reader whenever the readable side
 * is full keeps memory bounded by roughly SLICE/4 * 128 KiB in the worst case and by a few blocks
 * normally.
 */
const ZSTD_SLICE = 2048;

class ZstdDecompressStream extends Duplex {
  private readonly decoder: ZstdDecompress;
  /** False once push() asked us to stop; _read sets it again. */
  private canPush = true;
  /** Continuation of a write paused for backpressure, run by the next _read. */
  private continueWrite?: () => void;

  constructor(private readonly where: string) {
    super({ readableHighWaterMark: 256 * 1024 });
    this.decoder = new ZstdDecompress((data) => {
      // fzstd allocates a fresh array per block, so the bytes can be handed on without a copy.
      if (data.length > 0) this.canPush = this.push(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
    });
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (error?: Error | null) => void): void {
    this.feed(chunk, 0, cb);
  }

  private feed(chunk: Buffer, offset: number, cb: (error?: Error | null) => void): void {
    for (;;) {
      if (!this.canPush) {
        this.continueWrite = () => this.feed(chunk, offset, cb);
        return;
      }
      if (offset >= chunk.length) {
        cb();
        return;
      }
      const end = Math.min(offset + ZSTD_SLICE, chunk.length);
      try {
        this.decoder.push(chunk.subarray(offset, end));
      } catch (e) {
        cb(zstdError(e, this.where));
        return;
      }
      offset = end;
    }
  }

  override _read(): void {
    this.canPush = true;
    const next = this.continueWrite;
    this.continueWrite = undefined;
    next?.();
  }

  override _final(cb: (error?: Error | null) => void): void {
    try {
      this.decoder.push(new Uint8Array(0), true);
    } catch (e) {
      cb(zstdError(e, this.where));
      return;
    }
    this.push(null);
    cb();
  }
}

function zstdError(e: unknown, where: string): DecompressionError {
  const err = e as Error & { code?: number };
  // fzstd's ZstdErrorCode.UnexpectedEOF
  if (err.code === 5) return new DecompressionError(where, 'zstd', 'truncated zstd data', true, e);
  return new DecompressionError(where, 'zstd', `corrupt zstd data (${err.message})`, false, e);
}

// ---- xz ---------------------------------------------------------------------------------------

/** Loaded on first use: its WASM decoder costs ~8 MiB that inputs without xz never need. */
const loadXz = async () => (await import('xz-decompress')).default.XzReadableStream;

/**
 * xz-decompress allows one live decoder per process (a module-wide mutex around its WASM
 * context). A decoder that is abandoned before its start completes would hold that mutex forever,
 * so tarpush serialises xz streams itself and only constructs a decoder once it is sure to run
 * alone; then cancelling it always releases the inner mutex.
 */
let xzQueue: Promise<void> = Promise.resolve();

function acquireXzTurn(): Promise<() => void> {
  let release!: () => void;
  const turn = new Promise<void>((resolve) => (release = resolve));
  const mine = xzQueue.then(() => release);
  xzQueue = xzQueue.then(() => turn);
  return mine;
}

/** xz-embedded's xz_ret codes, as surfaced in xz-decompress's error message. */
const XZ_PROBLEMS: Record<string, string> = {
  '2': 'unsupported xz integrity check',
  '3': 'not enough memory to decompress xz data',
  '4': 'xz dictionary too large',
  '5': 'corrupt xz data (bad stream header)',
  '6': 'unsupported xz options (filter not supported)',
  '7': 'corrupt xz data',
  '8': 'truncated xz data',
};

/**
 * Bridges Node streams to xz-decompress's web streams with backpressure in both directions: a
 * written chunk is only acknowledged once the decoder has asked for it, and the decoder is only
 * asked for output while the readable side wants more.
 */
class XzDecompressStream extends Duplex {
  private reader?: ReadableStreamDefaultReader<Uint8Array>;
  private releaseTurn?: () => void;
  private starting?: Promise<void>;
  private controller?: ReadableStreamDefaultController<Uint8Array>;
  private pull?: () => void;
  private pendingWrite?: { chunk: Buffer; cb: (error?: Error | null) => void };
  private inputEnded = false;
  private finished = false;
  private reading = false;

  constructor(private readonly where: string) {
    super({ readableHighWaterMark: 256 * 1024 });
  }

  private start(): Promise<void> {
    this.starting ??= Promise.all([acquireXzTurn(), loadXz()]).then(([release, XzReadableStream]) => {
      if (this.destroyed) {
        release();
        return;
      }
      this.releaseTurn = release;
      const source = new ReadableStream<Uint8Array>(
        {
          start: (controller) => {
            this.controller = controller;
          },
          pull: () =>
            new Promise<void>((resolve) => {
              this.pull = resolve;
              this.offer();
            }),
          cancel: () => {
            this.failPendingWrite();
          },
        },
        { highWaterMark: 0 },
      );
      this.reader = new XzReadableStream(source as unknown as globalThis.ReadableStream<Uint8Array>).getReader() as unknown as ReadableStreamDefaultReader<Uint8Array>;
    });
    return this.starting;
  }

  /** Hands the decoder what it asked for, if there is anything to hand. */
  private offer(): void {
    const pull = this.pull;
    if (!pull || !this.controller) return;
    if (this.pendingWrite) {
      const { chunk, cb } = this.pendingWrite;
      this.pendingWrite = undefined;
      this.pull = undefined;
      this.controller.enqueue(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
      pull();
      cb();
    } else if (this.inputEnded) {
      this.pull = undefined;
      this.controller.close();
      pull();
    }
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (error?: Error | null) => void): void {
    if (this.finished) {
      // The decoder (which itself handles concatenated streams) has ended; only padding may
      // follow.
      if (chunk.some((b) => b !== 0)) {
        cb(new DecompressionError(this.where, 'xz', 'corrupt xz data (data after the end of the stream)', false));
      } else cb();
      return;
    }
    this.pendingWrite = { chunk, cb };
    this.start().then(
      () => this.offer(),
      (e) => this.destroy(e as Error),
    );
  }

  override _final(cb: (error?: Error | null) => void): void {
    this.inputEnded = true;
    if (!this.finished) this.start().then(() => this.offer(), (e) => this.destroy(e as Error));
    cb();
  }

  override _read(): void {
    if (this.reading || this.finished) return;
    this.reading = true;
    this.start()
      .then(() => this.pump())
      .catch((e: unknown) => this.destroy(this.toError(e)));
  }

  private async pump(): Promise<void> {
    const reader = this.reader;
    if (!reader) return;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) {
        this.finish();
        this.push(null);
        return;
      }
      if (value.byteLength > 0 && !this.push(Buffer.from(value.buffer, value.byteOffset, value.byteLength))) {
        this.reading = false;
        return;
      }
    }
  }

  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    this.releaseTurn?.();
    this.releaseTurn = undefined;
    // Input the decoder never asked for is checked by _write as trailing data.
    const pending = this.pendingWrite;
    this.pendingWrite = undefined;
    if (pending) this._write(pending.chunk, 'binary', pending.cb);
  }

  private failPendingWrite(): void {
    const pending = this.pendingWrite;
    this.pendingWrite = undefined;
    pending?.cb();
  }

  private toError(e: unknown): Error {
    if (e instanceof TarpushError) return e;
    const message = e instanceof Error ? e.message : String(e);
    const code = /error code (\d+)/.exec(message)?.[1];
    // A decoder that runs dry after all input arrived reports a buffer error or generic failure.
    if (this.inputEnded && (code === '8' || code === undefined)) {
      return new DecompressionError(this.where, 'xz', 'truncated xz data', true, e);
    }
    const problem = (code && XZ_PROBLEMS[code]) ?? `corrupt xz data (${message})`;
    return new DecompressionError(this.where, 'xz', problem, code === '8', e);
  }

  override _destroy(err: Error | null, cb: (error?: Error | null) => void): void {
    const wasFinished = this.finished;
    this.finished = true;
    this.failPendingWrite();
    const release = this.releaseTurn;
    this.releaseTurn = undefined;
    if (!wasFinished && this.reader) {
      // Cancelling releases xz-decompress's own mutex and WASM context; errors from a decoder
      // that already failed are irrelevant now.
      this.reader.cancel().catch(() => {});
    }
    release?.();
    cb(err);
  }
}
