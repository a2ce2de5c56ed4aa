import { createHash } from 'node:crypto';
import { Readable, type Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { decompressor, sniffCompression, SNIFF_BYTES, type Compression } from '../archive/compression.js';
import type { Content } from '../image/content.js';
import type { Descriptor } from '../image/descriptor.js';
import { layerCompression } from '../image/mediatypes.js';

export interface LayerDigests {
  /** sha256 of the uncompressed tar; undefined when only the blob itself was checked. */
  diffId?: string;
  /** The compression actually decoded (declared by the media type, or sniffed). */
  compression: Compression;
  /** True when the media type is not a known layer type and the compression was sniffed. */
  sniffed: boolean;
}

/**
 * Reads a layer once: the Content's own stream verifies size and digest of the blob as it flows,
 * and the same bytes are decompressed and hashed for the diff_id. An uncompressed layer's diff_id
 * is its digest, which the verified stream has just proven, so it is not hashed a second time.
 * Rejects with the stream's error (BlobMismatchError, DecompressionError, a missing blob).
 */
export async function digestLayer(content: Content, desc: Descriptor, opts: { diffId: boolean; where: string }): Promise<LayerDigests> {
  let stream = await content.open();
  if (!opts.diffId) {
    await drain(stream);
    return { compression: 'none', sniffed: false };
  }
  let compression: Compression | undefined = layerCompression(desc.mediaType);
  const sniffed = compression === undefined;
  if (compression === undefined) {
    const { head, rest } = await peek(stream, SNIFF_BYTES);
    compression = sniffCompression(head);
    stream = rest;
  }
  if (compression === 'none') {
    await drain(stream);
    return { diffId: desc.digest, compression, sniffed };
  }
  return { diffId: await hashDecompressed(stream, compression, `${opts.where}: layer ${desc.digest}`), compression, sniffed };
}

/**
 * Decompresses and hashes. When decompression fails, the rest of the blob is still read so that
 * a blob that does not match its digest is reported as that (the cause) rather than as the corrupt
 * compressed data it leads to.
 */
async function hashDecompressed(stream: Readable, compression: Compression, where: string): Promise<string> {
  const hash = createHash('sha256');
  const dec = decompressor(compression, where);
  let decError: Error | undefined;
  dec.on('data', (chunk: Buffer) => hash.update(chunk));
  const decDone = finished(dec).catch((e: Error) => {
    decError ??= e;
  });
  dec.on('error', (e: Error) => {
    decError ??= e;
  });
  try {
    for await (const chunk of stream) {
      if (decError) continue;
      if (!dec.write(chunk)) await writable(dec);
    }
  } catch (e) {
    dec.destroy();
    throw e;
  }
  if (!decError) dec.end();
  await decDone;
  if (decError) throw decError;
  return `sha256:${hash.digest('hex')}`;
}

function writable(stream: Writable): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = (): void => {
      stream.off('drain', done);
      stream.off('error', done);
      stream.off('close', done);
      resolve();
    };
    stream.on('drain', done);
    stream.on('error', done);
    stream.on('close', done);
  });
}

/** Consumes a stream without touching its bytes (the verifying stream inside does the hashing). */
async function drain(stream: Readable): Promise<void> {
  stream.resume();
  await finished(stream);
}

/** Reads the first `n` bytes (fewer at the end of the stream) and gives back a stream of all of it. */
async function peek(stream: Readable, n: number): Promise<{ head: Buffer; rest: Readable }> {
  const iterator = stream[Symbol.asyncIterator]();
  const first: Buffer[] = [];
  let have = 0;
  let ended = false;
  while (have < n) {
    const next = await iterator.next();
    if (next.done) {
      ended = true;
      break;
    }
    first.push(next.value as Buffer);
    have += (next.value as Buffer).length;
  }
  const head = Buffer.concat(first);
  const rest = Readable.from(
    (async function* () {
      if (head.length) yield head;
      if (ended) return;
      for (;;) {
        const next = await iterator.next();
        if (next.done) return;
        yield next.value as Buffer;
      }
    })(),
    { objectMode: false },
  );
  return { head, rest };
}
