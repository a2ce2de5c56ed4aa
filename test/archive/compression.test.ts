import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, it } from 'node:test';
import { gzipSync } from 'node:zlib';
import { DecompressionError, decompressor, sniffCompression, type Compression } from '../../src/archive/compression.js';
import { TarpushError } from '../../src/errors.js';
import { compressWith } from './fixtures.js';

/** Partly compressible test data: random runs between repeated text. */
function sample(size: number): Buffer {
  const parts: Buffer[] = [];
  let total = 0;
  let i = 0;
  while (total < size) {
    const part = i++ % 2 === 0 ? randomBytes(40_000) : Buffer.from(`line ${i} of some repetitive text\n`.repeat(2000));
    parts.push(part);
    total += part.length;
  }
  return Buffer.concat(parts).subarray(0, size);
}

function digest(buf: Buffer): string {
  return createHash('sha256').update(buf).digest('hex');
}

/** Decompresses `input` fed in chunks of `chunkSize`, returning sha256, size and peak buffering. */
async function decompress(kind: Compression, input: Buffer, chunkSize = 64 * 1024, where?: string) {
  const hash = createHash('sha256');
  let size = 0;
  let peak = 0;
  const d = decompressor(kind, where);
  const chunks = (function* () {
    for (let i = 0; i < input.length; i += chunkSize) yield input.subarray(i, i + chunkSize);
  })();
  await pipeline(Readable.from(chunks), d, async (source: AsyncIterable<Buffer>) => {
    for await (const chunk of source) {
      hash.update(chunk);
      size += chunk.length;
      peak = Math.max(peak, d.readableLength);
    }
  });
  return { sha: hash.digest('hex'), size, peak };
}

async function failure(kind: Compression, input: Buffer, where = 'layer.bin'): Promise<DecompressionError> {
  try {
    await decompress(kind, input, 64 * 1024, where);
  } catch (e) {
    assert.ok(e instanceof DecompressionError, `expected a DecompressionError, got ${String(e)}`);
    assert.ok(e instanceof TarpushError);
    assert.equal(e.kind, 'input');
    return e;
  }
  assert.fail('decompression should have failed');
}

describe('sniffCompression', () => {
  const data = Buffer.from('hello world, this is plain text that is long enough');
  it('recognises gzip, zstd, xz and bzip2 by magic bytes', () => {
    assert.equal(sniffCompression(gzipSync(data)), 'gzip');
    assert.equal(sniffCompression(compressWith('zstd', data)), 'zstd');
    assert.equal(sniffCompression(compressWith('xz', data)), 'xz');
    assert.equal(sniffCompression(compressWith('bzip2', data)), 'bzip2');
    assert.equal(sniffCompression(compressWith('bzip2', Buffer.alloc(0))), 'bzip2');
  });
  it('says none for plain data, short heads and look-alikes', () => {
    assert.equal(sniffCompression(data), 'none');
    assert.equal(sniffCompression(Buffer.alloc(0)), 'none');
    assert.equal(sniffCompression(Buffer.from([0x1f])), 'none');
    // A tar entry may well be called "BZh9-notes.txt".
    assert.equal(sniffCompression(Buffer.from('BZh9-notes.txt\0\0\0\0')), 'none');
  });
});

describe('decompressor', () => {
  const input = sample(6 * 1024 * 1024);
  const expected = digest(input);

  for (const [kind, compressed] of [
    ['gzip', () => gzipSync(input)],
    ['zstd', () => compressWith('zstd', input, ['-3'])],
    ['xz', () => compressWith('xz', input, ['-1'])],
  ] as const) {
    it(`decompresses ${kind} exactly, whatever the input chunking`, async () => {
      const c = compressed();
      for (const chunkSize of [997, 64 * 1024, c.length]) {
        const r = await decompress(kind, c, chunkSize);
        assert.equal(r.sha, expected, `chunk size ${chunkSize}`);
        assert.equal(r.size, input.length);
      }
    });

    it(`decompresses ${kind} fed one byte at a time`, async () => {
      const small = sample(100_000);
      const c = kind === 'gzip' ? gzipSync(small) : compressWith(kind, small);
      assert.equal((await decompress(kind, c, 1)).sha, digest(small));
    });

    it(`reports truncated ${kind} data naming the file`, async () => {
      const c = compressed();
      const e = await failure(kind, c.subarray(0, Math.floor(c.length / 2)));
      assert.equal(e.message, `layer.bin: truncated ${kind} data`);
      assert.equal(e.truncated, true);
    });

    it(`reports corrupt ${kind} data naming the file`, async () => {
      const c = Buffer.from(compressed());
      // Garbage right after the magic bytes. (zstd is corrupted at its frame and block headers:
      // fzstd does not check the optional XXH64 content checksum, so garbage inside a block
      // decodes to garbage; tarpush's digest checks catch that downstream.)
      for (let i = kind === 'zstd' ? 4 : 32; i < 4096; i++) c[i] = (i * 31) & 0xff;
      const e = await failure(kind, c);
      assert.match(e.message, new RegExp(`^layer\\.bin: corrupt ${kind} data`));
      assert.equal(e.truncated, false);
    });
  }

  it('decompresses multi-member gzip (pigz, cat a.gz b.gz)', async () => {
    const a = sample(300_000);
    const b = Buffer.from('second member\n'.repeat(1000));
    const r = await decompress('gzip', Buffer.concat([gzipSync(a), gzipSync(b), gzipSync(Buffer.alloc(0))]));
    assert.equal(r.sha, digest(Buffer.concat([a, b])));
  });

  it('decompresses multi-frame zstd', async () => {
    const a = sample(300_000);
    const b = Buffer.from('second frame\n'.repeat(1000));
    const r = await decompress('zstd', Buffer.concat([compressWith('zstd', a), compressWith('zstd', b)]));
    assert.equal(r.sha, digest(Buffer.concat([a, b])));
  });

  it('decompresses concatenated xz streams', async () => {
    const a = Buffer.alloc(200_000, 0x61);
    const b = sample(500_000);
    const r = await decompress('xz', Buffer.concat([compressWith('xz', a), compressWith('xz', b)]));
    assert.equal(r.sha, digest(Buffer.concat([a, b])));
  });

  it('keeps memory flat on a zstd bomb (256 MiB of zeros in a few KiB)', async () => {
    const bomb = compressWith('zstd', Buffer.alloc(256 * 1024 * 1024), ['-19']);
    assert.ok(bomb.length < 64 * 1024);
    const r = await decompress('zstd', bomb, bomb.length);
    assert.equal(r.size, 256 * 1024 * 1024);
    // 2 KiB slices of RLE blocks can emit at most ~64 MiB at once; normally a few blocks.
    assert.ok(r.peak <= 64 * 1024 * 1024, `peak buffered ${r.peak}`);
  });

  it('runs xz streams concurrently and survives an abandoned one', async () => {
    const c = compressWith('xz', input, ['-1']);
    const abandoned = decompressor('xz', 'abandoned.xz');
    abandoned.write(c.subarray(0, 100_000));
    abandoned.destroy();
    const neverStarted = decompressor('xz', 'never.xz');
    neverStarted.destroy();
    const results = await Promise.all([decompress('xz', c), decompress('xz', c), failure('xz', c.subarray(0, 50_000))]);
    assert.equal(results[0].sha, expected);
    assert.equal(results[1].sha, expected);
    assert.equal(results[2].message, 'layer.bin: truncated xz data');
    // A consumer that stops reading half-way must not block the next xz stream.
    const early = decompressor('xz', 'early.xz');
    await assert.rejects(
      pipeline(Readable.from([c]), early, async (source: AsyncIterable<Buffer>) => {
        for await (const _ of source) throw new Error('consumer gave up');
      }),
      /consumer gave up/,
    );
    assert.equal((await decompress('xz', c)).sha, expected);
  });

  it('refuses bzip2 with a clear error', () => {
    assert.throws(() => decompressor('bzip2', 'old.tar.bz2'), { message: 'old.tar.bz2: bzip2 is not supported (decompress it first, e.g. with bunzip2)' });
  });

  it('passes plain data through for none', async () => {
    const r = await decompress('none', input);
    assert.equal(r.sha, expected);
  });
});
