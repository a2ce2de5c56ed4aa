import {
  ZStream,
  Z_FINISH,
  Z_OK,
  Z_STREAM_END,
  Z_SYNC_FLUSH,
  zlibDeflate,
  zlibDeflateEnd,
  zlibDeflateInit2,
  zlibDeflateSetDictionary,
} from 'pako';

/**
 * The one place that turns a block into raw deflate bytes. Every parameter pako would otherwise
 * default is pinned here, because these bytes end up in layer digests that users rely on being
 * the same everywhere: a change to anything in this file must change `settingsKey`.
 *
 * A fresh deflate state per block, never deflateReset: a reused state keeps the previous block's
 * window bytes, and whether those can ever sway a match choice is not something to bet digests
 * on (which worker got which block before must not matter).
 */
const METHOD_DEFLATE = 8;
const RAW_WINDOW_BITS = -15;
const MEM_LEVEL = 8;
const STRATEGY = 0;
/** pako 3's default hash, pinned explicitly in case a later default changes. */
const LEGACY_HASH = false;

export const DICTIONARY_SIZE = 32 * 1024;

/**
 * Already-compressed blocks (compressed files inside layers: .gz, .jar, .png, .xz, ...) are stored
 * rather than deflated: deflating them gains nothing and is pako's slowest case (~27 MB/s against
 * >2 GB/s for stored blocks). Both tests must agree, so either can veto storing:
 * - the byte histogram is close to uniform: chi-square against uniform below n/32, where order-0
 *   entropy coding could save at most ~0.3% (random data scores ~255 whatever n, compressed
 *   formats about n/1000 to n/50, text and code several times n);
 * - evenly spaced samples do not deflate (catches uniform but repetitive data, e.g. a 0..255 ramp).
 * The rule is part of the output format: any change to it must bump INCOMPRESSIBLE_RULE.
 */
export const INCOMPRESSIBLE_RULE = 1;
/** chi-square must be below n / CHI2_DIVISOR. */
const CHI2_DIVISOR = 32n;
/** Below this a histogram says too little (short text also looks uniform-ish); such blocks are deflated. */
const MIN_BLOCK = 64 * 1024;
const SAMPLES = 4;
const SAMPLE_SIZE = 8 * 1024;
/** Samples must deflate to at least this share (percent) of their size. */
const MIN_SAMPLE_PERCENT = 97;

/** Integer-exact throughout, so the decision cannot differ between machines. */
export function looksIncompressible(block: Uint8Array): boolean {
  const n = block.length;
  if (n < MIN_BLOCK) return false;
  const counts = new Uint32Array(256);
  for (let i = 0; i < n; i++) counts[block[i]!]!++;
  let sumSquares = 0n;
  for (let i = 0; i < 256; i++) sumSquares += BigInt(counts[i]!) * BigInt(counts[i]!);
  const big = BigInt(n);
  // chi2 = 256 * sumSquares / n - n < n / 32, compared without division.
  if (CHI2_DIVISOR * (256n * sumSquares - big * big) >= big * big) return false;
  const sample = new Uint8Array(SAMPLES * SAMPLE_SIZE);
  const step = Math.floor((n - SAMPLE_SIZE) / (SAMPLES - 1));
  for (let k = 0; k < SAMPLES; k++) sample.set(block.subarray(k * step, k * step + SAMPLE_SIZE), k * SAMPLE_SIZE);
  const deflated = deflateWith(sample, undefined, true, 1).length;
  return deflated * 100 >= sample.length * MIN_SAMPLE_PERCENT;
}

/** zlib's deflateBound for raw deflate, plus room for the sync-flush marker. */
export function deflateBound(n: number): number {
  return n + (n >>> 12) + (n >>> 14) + (n >>> 25) + 13 + 64;
}

/**
 * Compresses into `scratch` when it is big enough (a worker keeps one, so per-block garbage stays
 * small) and returns a view of the bytes written; the caller copies them out before the next call.
 */
export function deflateBlock(
  block: Uint8Array,
  dictionary: Uint8Array | undefined,
  final: boolean,
  level: number,
  scratch?: Uint8Array,
  storeIncompressible = false,
): Uint8Array {
  return deflateWith(block, dictionary, final, storeIncompressible && looksIncompressible(block) ? 0 : level, scratch);
}

function deflateWith(
  block: Uint8Array,
  dictionary: Uint8Array | undefined,
  final: boolean,
  level: number,
  scratch?: Uint8Array,
): Uint8Array {
  const strm = new ZStream();
  check(zlibDeflateInit2(strm, level, METHOD_DEFLATE, RAW_WINDOW_BITS, MEM_LEVEL, STRATEGY, LEGACY_HASH), 'init');
  try {
    if (dictionary && dictionary.length > 0) check(zlibDeflateSetDictionary(strm, dictionary), 'dictionary');
    const bound = deflateBound(block.length);
    let out = scratch && scratch.length >= bound ? scratch : new Uint8Array(bound);
    strm.input = block;
    strm.next_in = 0;
    strm.avail_in = block.length;
    strm.output = out as Uint8Array<ArrayBuffer>;
    strm.next_out = 0;
    strm.avail_out = out.length;
    const flush = final ? Z_FINISH : Z_SYNC_FLUSH;
    for (;;) {
      const status = zlibDeflate(strm, flush);
      if (status !== Z_OK && status !== Z_STREAM_END) throw new Error(`deflate failed with status ${status}`);
      if (final ? status === Z_STREAM_END : strm.avail_in === 0 && strm.avail_out > 0) break;
      // Cannot happen with a bound-sized buffer; handled the way zlib documents, just in case.
      const bigger = new Uint8Array(out.length * 2);
      bigger.set(out.subarray(0, strm.next_out));
      out = bigger;
      strm.output = out as Uint8Array<ArrayBuffer>;
      strm.avail_out = out.length - strm.next_out;
    }
    return out.subarray(0, strm.next_out);
  } finally {
    zlibDeflateEnd(strm);
  }
}

function check(status: number, what: string): void {
  if (status !== Z_OK) throw new Error(`deflate ${what} failed with status ${status}`);
}
