import { createHash, type Hash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { TarpushError } from '../errors.js';

/** `algorithm:hex`, e.g. `sha256:e3b0c4…`. */
export type Digest = string;

const HEX_LENGTH: Record<string, number> = { sha256: 64, sha512: 128 };

export interface ParsedDigest {
  algorithm: 'sha256' | 'sha512';
  hex: string;
}

export function parseDigest(value: string): ParsedDigest {
  const m = /^([a-z0-9]+(?:[+._-][a-z0-9]+)*):([a-f0-9]+)$/.exec(value);
  const algorithm = m?.[1];
  if (!m || !algorithm || !(algorithm in HEX_LENGTH) || m[2]!.length !== HEX_LENGTH[algorithm]) {
    throw new TarpushError('input', `invalid digest "${truncate(value)}"`);
  }
  return { algorithm: algorithm as ParsedDigest['algorithm'], hex: m[2]! };
}

export function isDigest(value: unknown): value is Digest {
  if (typeof value !== 'string') return false;
  try {
    parseDigest(value);
    return true;
  } catch {
    return false;
  }
}

export function sha256(data: Buffer | string): Digest {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

export function hasherFor(digest: Digest): Hash {
  return createHash(parseDigest(digest).algorithm);
}

/** Thrown (as a stream error) when bytes do not match the descriptor they were read for. */
export class BlobMismatchError extends TarpushError {
  constructor(
    readonly where: string,
    readonly expected: { digest: Digest; size: number },
    readonly actual: { digest?: Digest; size: number },
  ) {
    const what =
      actual.size !== expected.size
        ? `size ${actual.size} where ${expected.size} was expected`
        : `digest ${actual.digest} where ${expected.digest} was expected`;
    super('input', `${where}: blob ${expected.digest} does not match its descriptor: ${what}`);
  }
}

/**
 * A pass-through stream that checks size and digest as bytes flow, so no caller ever consumes
 * unverified content without learning about it: a mismatch errors the stream at its end (or as
 * soon as more bytes than the size arrive).
 */
export function verifyStream(expected: { digest: Digest; size: number }, where: string): Transform {
  const hash = hasherFor(expected.digest);
  const algorithm = parseDigest(expected.digest).algorithm;
  let seen = 0;
  return new Transform({
    transform(chunk: Buffer, _enc, cb: TransformCallback) {
      seen += chunk.length;
      if (seen > expected.size) {
        cb(new BlobMismatchError(where, expected, { size: seen }));
        return;
      }
      hash.update(chunk);
      cb(null, chunk);
    },
    flush(cb: TransformCallback) {
      if (seen !== expected.size) {
        cb(new BlobMismatchError(where, expected, { size: seen }));
        return;
      }
      const actual = `${algorithm}:${hash.digest('hex')}`;
      if (actual !== expected.digest) {
        cb(new BlobMismatchError(where, expected, { digest: actual, size: seen }));
        return;
      }
      cb();
    },
  });
}

/** A pass-through that learns digest and size of whatever flows, for content not yet described. */
export class DigestingStream extends Transform {
  private readonly hash = createHash('sha256');
  size = 0;
  private result?: Digest;
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.size += chunk.length;
    this.hash.update(chunk);
    cb(null, chunk);
  }
  override _flush(cb: TransformCallback): void {
    this.result = `sha256:${this.hash.digest('hex')}`;
    cb();
  }
  /** Available once the stream has ended. */
  get digest(): Digest {
    if (!this.result) throw new Error('DigestingStream: digest read before end of stream');
    return this.result;
  }
}

function truncate(s: string): string {
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}
