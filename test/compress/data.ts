/**
 * Deterministic test inputs. The golden digests in gzip.test.ts are pinned for exactly these
 * bytes: never change this file's output (add a new generator instead).
 */

// mulberry32, shared with the benchmark generators (32-bit integer arithmetic: identical everywhere).
import { prng } from '../../bench/lib/generate.js';

export { prng };

const WORDS = (
  'layer image registry manifest digest tarball blob config index platform amd64 arm64 linux ' +
  'usr bin lib etc share doc locale python3 node_modules package json the of and to in is it for'
).split(' ');

/**
 * A mix like real layers: runs of text (very compressible), structured binary (somewhat) and
 * random bytes (not at all), in segments of varying length.
 */
export function mixedData(size: number, seed: number): Buffer {
  const rand = prng(seed);
  const out = Buffer.alloc(size);
  let pos = 0;
  while (pos < size) {
    const kind = rand() % 3;
    const len = Math.min(size - pos, 1 + (rand() % 200_000));
    const end = pos + len;
    if (kind === 0) {
      while (pos < end) {
        const word = WORDS[rand() % WORDS.length]!;
        pos += out.write(rand() % 12 === 0 ? `${word}\n` : `${word} `, pos, end - pos, 'latin1');
      }
    } else if (kind === 1) {
      let counter = rand();
      for (; pos + 4 <= end; pos += 4) {
        counter = (counter + 1 + (rand() % 4)) >>> 0;
        out.writeUInt32LE(counter, pos);
      }
      for (; pos < end; pos++) out[pos] = 0;
    } else {
      for (; pos + 4 <= end; pos += 4) out.writeUInt32LE(rand(), pos);
      for (; pos < end; pos++) out[pos] = rand() & 0xff;
    }
  }
  return out;
}

/** Splits `data` into chunks of pseudo-random sizes from 1 to `max` bytes. */
export function randomChunks(data: Buffer, seed: number, max: number): Buffer[] {
  const rand = prng(seed);
  const chunks: Buffer[] = [];
  for (let pos = 0; pos < data.length; ) {
    const n = 1 + (rand() % max);
    chunks.push(data.subarray(pos, pos + n));
    pos += n;
  }
  return chunks;
}

/** Pseudo-random bytes (statistically like compressed data). */
export function randomData(size: number, seed: number): Buffer {
  const rand = prng(seed);
  const out = Buffer.alloc(size);
  let pos = 0;
  for (; pos + 4 <= size; pos += 4) out.writeUInt32LE(rand(), pos);
  for (; pos < size; pos++) out[pos] = rand() & 0xff;
  return out;
}

/** Only the word-text part of mixedData: compresses well. */
export function textData(size: number): Buffer {
  const rand = prng(size);
  const out = Buffer.alloc(size);
  for (let pos = 0; pos < size; ) {
    const word = WORDS[rand() % WORDS.length]!;
    pos += out.write(rand() % 12 === 0 ? `${word}\n` : `${word} `, pos, size - pos, 'latin1');
  }
  return out;
}
