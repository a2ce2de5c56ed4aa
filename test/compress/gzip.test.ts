import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { after, describe, test } from 'node:test';
import { gunzipSync } from 'node:zlib';
import {
  createGzipStream,
  DEFAULT_GZIP_SETTINGS,
  gzipDescribe,
  PAKO_VERSION,
  settingsKey,
  type GzipSettings,
} from '../../src/compress/gzip.js';
import { WorkerPool } from '../../src/compress/pool.js';
import { mixedData, randomChunks, randomData, textData } from './data.js';

const MiB = 1024 * 1024;
const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

const pools = new Map<number, WorkerPool>();
function pool(n: number): WorkerPool {
  let p = pools.get(n);
  if (!p) pools.set(n, (p = new WorkerPool(n)));
  return p;
}
after(async () => {
  for (const p of pools.values()) await p.close();
});

async function gzip(chunks: Buffer[], opts: { settings?: GzipSettings; pool?: WorkerPool } = {}): Promise<Buffer> {
  const out: Buffer[] = [];
  await pipeline(
    Readable.from(chunks),
    createGzipStream(opts),
    new Writable({
      write(c: Buffer, _e, cb) {
        out.push(c);
        cb();
      },
    }),
  );
  return Buffer.concat(out);
}

/** The CLI gzip must agree: it is what users and registries' clients will actually run into. */
function cliCheck(gz: Buffer, input: Buffer): void {
  const dir = mkdtempSync(join(tmpdir(), 'tarpush-gz-'));
  try {
    const file = join(dir, 'x.gz');
    writeFileSync(file, gz);
    const t = spawnSync('gzip', ['-t', file]);
    assert.equal(t.status, 0, `gzip -t failed: ${t.stderr}`);
    const out = execFileSync('gzip', ['-dc', file], { maxBuffer: 64 * MiB });
    assert.ok(out.equals(input), 'gzip -dc output differs from input');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Golden outputs for the default settings. If one of these changes, every layer digest tarpush
 * ever printed for such content changes: that is a breaking change for users, never a test fix.
 */
const GOLDEN: Array<{ name: string; input: () => Buffer; digest: string; size: number }> = [
  {
    name: 'empty',
    input: () => Buffer.alloc(0),
    digest: 'sha256:ac73670af3abed54ac6fb4695131f4099be9fbe39d6076c5d0264a6bbdae9d83',
    size: 20,
  },
  {
    name: 'one byte',
    input: () => Buffer.from('x'),
    digest: 'sha256:d96912cae540a75b4520f1029005dc3c119d84356eb4aae5f41cb8ad5c3657bc',
    size: 21,
  },
  {
    name: 'exactly one block',
    input: () => mixedData(MiB, 1),
    digest: 'sha256:1e4814ec1cbf459398c689286da3a675dbd8469b2f4a3b272be44dd1b2c9263e',
    size: 762379,
  },
  {
    name: 'one block + 1 byte',
    input: () => mixedData(MiB + 1, 2),
    digest: 'sha256:d3cd0c8e8a4b469e9c708a8032fb59afb7fa49ad93f9f45948839025fa3c24b0',
    size: 760972,
  },
  {
    name: 'mixed 3.5 MiB',
    input: () => mixedData(3.5 * MiB, 3),
    digest: 'sha256:fba1a17be80c2b570acc56609417b3adaa1d7688f0ef338423d0f48432408613',
    size: 2428611,
  },
  {
    name: 'random block between text blocks (stored)',
    input: () => Buffer.concat([textData(MiB), randomData(MiB, 5), textData(MiB / 2)]),
    digest: 'sha256:635e78ec0e718fca23ade8fddd8c3714e7c711444d3e513aa59d01c65734cd15',
    size: 1470514,
  },
  {
    name: 'three blocks exactly',
    input: () => mixedData(3 * MiB, 4),
    digest: 'sha256:bcac60de0f1d4e792344d96cd14d880c19b0fe133e1799ce041de472adbda240',
    size: 2425549,
  },
];

describe('deterministic gzip', () => {
  test('settings key names pako version, level and block size', () => {
    assert.equal(PAKO_VERSION, '3.0.3');
    assert.equal(settingsKey(DEFAULT_GZIP_SETTINGS), 'gzip-pako3.0.3-l1-b1048576-si1');
    assert.equal(settingsKey({ level: 6, blockSize: 65536 }), 'gzip-pako3.0.3-l6-b65536');
    assert.equal(settingsKey({ level: 6, blockSize: 65536, storeIncompressible: false }), 'gzip-pako3.0.3-l6-b65536');
  });

  test('invalid settings are refused', () => {
    assert.throws(() => settingsKey({ level: 0, blockSize: MiB }), /level/);
    assert.throws(() => settingsKey({ level: 10, blockSize: MiB }), /level/);
    assert.throws(() => createGzipStream({ settings: { level: 1, blockSize: 1000 } }), /block size/);
  });

  test('empty input gives the minimal valid gzip', async () => {
    const gz = await gzip([], { pool: pool(2) });
    assert.equal(gz.toString('hex'), '1f8b08000000000000ff03000000000000000000');
    assert.equal(gunzipSync(gz).length, 0);
    cliCheck(gz, Buffer.alloc(0));
  });

  for (const g of GOLDEN) {
    test(`golden: ${g.name}, identical for 1, 2, 3 and 7 workers`, async () => {
      const input = g.input();
      const outputs = [];
      for (const n of [1, 2, 3, 7]) outputs.push(await gzip([input], { pool: pool(n) }));
      const first = outputs[0]!;
      for (const o of outputs) assert.ok(o.equals(first), 'output depends on worker count');
      assert.ok(gunzipSync(first).equals(input), 'zlib gunzip round trip');
      cliCheck(first, input);
      assert.deepEqual({ digest: sha(first), size: first.length }, { digest: g.digest, size: g.size });
    });
  }

  test('any input chunking gives identical bytes', async () => {
    const input = mixedData(2.25 * MiB, 5);
    const whole = await gzip([input], { pool: pool(2) });
    for (const [seed, max] of [
      [1, 7],
      [2, 1000],
      [3, 70_000],
      [4, 3 * MiB],
    ] as const) {
      const chunked = await gzip(
        randomChunks(input, seed, max).map((c) => Buffer.from(c)),
        { pool: pool(3) },
      );
      assert.ok(chunked.equals(whole), `chunking seed ${seed} max ${max} changed the output`);
    }
  });

  test('single-byte chunks with small blocks and level 6', async () => {
    const settings = { level: 6, blockSize: 32 * 1024 };
    const input = mixedData(200_000, 6);
    const whole = await gzip([input], { settings, pool: pool(2) });
    const bytes = await gzip(randomChunks(input, 9, 1), { settings, pool: pool(7) });
    assert.ok(bytes.equals(whole));
    assert.ok(gunzipSync(whole).equals(input));
    cliCheck(whole, input);
    assert.notEqual(sha(whole), sha(await gzip([input], { pool: pool(2) })), 'settings must matter');
  });

  test('already-compressed blocks are stored, everything else deflated', async () => {
    const random = randomData(2 * MiB, 6);
    const text = textData(2 * MiB);
    const gzRandom = await gzip([random], { pool: pool(2) });
    const gzText = await gzip([text], { pool: pool(2) });
    // Stored: 5 bytes per 64 KiB stored block, 5 per sync marker, 18 of framing.
    assert.ok(gzRandom.length - random.length < 300, `random grew by ${gzRandom.length - random.length}`);
    assert.ok(gzText.length < text.length / 3);
    const off = { ...DEFAULT_GZIP_SETTINGS, storeIncompressible: false };
    const deflated = await gzip([random], { settings: off, pool: pool(2) });
    assert.ok(!deflated.equals(gzRandom), 'the setting must change the output');
    assert.ok(gunzipSync(deflated).equals(random) && gunzipSync(gzRandom).equals(random));
    cliCheck(gzRandom, random);
  });

  test('gzipDescribe reports digests and sizes of output and input', async () => {
    const input = mixedData(1.5 * MiB, 7);
    const gz = await gzip([input], { pool: pool(2) });
    const d = await gzipDescribe(Readable.from(randomChunks(input, 5, 100_000)), { pool: pool(2) });
    assert.deepEqual(d, { digest: sha(gz), size: gz.length, diffId: sha(input), uncompressedSize: input.length });
  });

  test('gzipDescribe on the shared pool', async () => {
    const d = await gzipDescribe(Readable.from([Buffer.from('hello\n')]));
    assert.equal(d.diffId, sha(Buffer.from('hello\n')));
    assert.equal(d.uncompressedSize, 6);
  });

  test('destroying a stream with blocks in flight leaves nothing dangling', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (e: unknown) => unhandled.push(e);
    process.on('unhandledRejection', onUnhandled);
    try {
      const gz = createGzipStream({ pool: pool(2) });
      const errors: unknown[] = [];
      gz.on('error', (e) => errors.push(e));
      gz.resume();
      gz.write(mixedData(6 * MiB, 13));
      await new Promise((r) => setTimeout(r, 20));
      gz.destroy();
      await new Promise((r) => setTimeout(r, 500));
      assert.deepEqual(unhandled, []);
      assert.deepEqual(errors, []);
      // The shared-by-test pool still works afterwards.
      const out = await gzip([Buffer.from('still fine')], { pool: pool(2) });
      assert.equal(gunzipSync(out).toString(), 'still fine');
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });

  test('an input error rejects gzipDescribe', async () => {
    const input = new Readable({
      read() {
        this.push(mixedData(3 * MiB, 8));
        this.destroy(new Error('disk on fire'));
      },
    });
    await assert.rejects(gzipDescribe(input, { pool: pool(2) }), /disk on fire/);
  });
});
