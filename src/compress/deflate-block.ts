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
