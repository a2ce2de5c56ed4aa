import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { describe, test } from 'node:test';
import { Deflate, Z_FINISH, Z_SYNC_FLUSH } from 'pako';
import { looksIncompressible } from '../../src/compress/deflate-block.js';
import { defaultWorkerCount, WorkerPool } from '../../src/compress/pool.js';
import { mixedData, randomData, textData } from './data.js';

const gzipModule = fileURLToPath(new URL('../../src/compress/gzip.js', import.meta.url));
const poolModule = fileURLToPath(new URL('../../src/compress/pool.js', import.meta.url));

function runChild(code: string, env: NodeJS.ProcessEnv = {}) {
  return spawnSync(process.execPath, ['--input-type=module', '-e', code], {
    env: { ...process.env, ...env },
    encoding: 'utf8',
    timeout: 60_000,
  });
}

describe('worker pool', () => {
  test('worker count comes from TARPUSH_WORKERS, else the cores', () => {
    assert.equal(defaultWorkerCount({ TARPUSH_WORKERS: '3' }), 3);
    assert.ok(defaultWorkerCount({}) >= 1);
    assert.throws(() => defaultWorkerCount({ TARPUSH_WORKERS: 'many' }), /TARPUSH_WORKERS/);
    assert.throws(() => defaultWorkerCount({ TARPUSH_WORKERS: '0' }), /TARPUSH_WORKERS/);
  });

  /** pako's own high-level wrapper, as an independent reference for the worker's low-level calls. */
  function reference(block: Uint8Array, dictionary: Uint8Array | undefined, final: boolean, level: number): Buffer {
    const d = new Deflate({ level, raw: true, ...(dictionary ? { dictionary } : {}) });
    const chunks: Uint8Array[] = [];
    d.onData = (c) => chunks.push(c);
    d.push(block, final ? Z_FINISH : Z_SYNC_FLUSH);
    assert.equal(d.err, 0);
    return Buffer.concat(chunks);
  }

  test('results match pako\'s reference deflate and come back for each job', async () => {
    const pool = new WorkerPool(2);
    try {
      const data = mixedData(600_000, 11);
      const blocks = [data.subarray(0, 200_000), data.subarray(200_000, 400_000), data.subarray(400_000)];
      const jobs = blocks.map((b, i) =>
        pool.run({
          block: b,
          dictionary: i > 0 ? blocks[i - 1]!.subarray(-32768) : undefined,
          final: i === 2,
          level: 1,
        }),
      );
      const results = await Promise.all(jobs);
      results.forEach((r, i) => {
        const expected = reference(blocks[i]!, i > 0 ? blocks[i - 1]!.subarray(-32768) : undefined, i === 2, 1);
        assert.ok(expected.equals(r.output), `block ${i}`);
      });
      // Not transferred: the caller's buffer is intact.
      assert.equal(data.length, 600_000);
      assert.equal(data.readUInt8(599_999), mixedData(600_000, 11).readUInt8(599_999));
    } finally {
      await pool.close();
    }
  });

  test('a failing job rejects with a one-line error and the pool keeps working', async () => {
    const pool = new WorkerPool(1);
    try {
      await assert.rejects(pool.run({ block: Buffer.from('abc'), final: true, level: 42 }), /compression worker failed/);
      const ok = await pool.run({ block: Buffer.from('abc'), final: true, level: 1 });
      assert.ok(ok.output.equals(reference(Buffer.from('abc'), undefined, true, 1)));
    } finally {
      await pool.close();
    }
  });

  test('the incompressibility test tells random from text, and ignores small blocks', () => {
    assert.equal(looksIncompressible(randomData(1024 * 1024, 1)), true);
    assert.equal(looksIncompressible(randomData(64 * 1024, 2)), true);
    assert.equal(looksIncompressible(randomData(64 * 1024 - 1, 2)), false);
    assert.equal(looksIncompressible(textData(1024 * 1024)), false);
    assert.equal(looksIncompressible(mixedData(1024 * 1024, 3)), false);
    assert.equal(looksIncompressible(Buffer.alloc(1024 * 1024)), false);
    // Every byte value exactly equally often (chi-square 0) yet extremely repetitive: the
    // sample test must veto storing it.
    const ramp = Buffer.alloc(256 * 1024);
    for (let i = 0; i < ramp.length; i++) ramp[i] = i & 0xff;
    assert.equal(looksIncompressible(ramp), false);
    // Compressed data, the case the rule exists for.
    assert.equal(looksIncompressible(gzipSync(textData(4 * 1024 * 1024), { level: 9 }).subarray(0, 1024 * 1024)), true);
  });

  test('close rejects queued work and later runs', async () => {
    const pool = new WorkerPool(1);
    const data = mixedData(4 * 1024 * 1024, 12);
    const jobs = [0, 1, 2].map(() => pool.run({ block: data, final: true, level: 6 }));
    const settled = Promise.allSettled(jobs);
    await pool.close();
    const outcomes = await settled;
    assert.ok(outcomes.some((o) => o.status === 'rejected'), 'queued jobs must be rejected');
    await assert.rejects(pool.run({ block: data, final: true, level: 1 }), /closed/);
    await pool.close();
  });

  test('an idle shared pool does not keep the process alive, a busy one does', () => {
    const code = `
      import { Readable } from 'node:stream';
      import { gzipDescribe } from ${JSON.stringify(gzipModule)};
      import { sharedPool } from ${JSON.stringify(poolModule)};
      const input = Readable.from([Buffer.alloc(5 * 1024 * 1024, 'abc')]);
      const d = await gzipDescribe(input);
      console.log(sharedPool().size, d.uncompressedSize, d.digest);
    `;
    const started = Date.now();
    const r = runChild(code, { TARPUSH_WORKERS: '3' });
    assert.equal(r.status, 0, r.stderr);
    const [size, n, digest] = r.stdout.trim().split(' ');
    assert.equal(size, '3');
    assert.equal(n, String(5 * 1024 * 1024));
    assert.match(digest!, /^sha256:[0-9a-f]{64}$/);
    assert.ok(Date.now() - started < 30_000, 'child took too long to exit');
  });

  test('a bad TARPUSH_WORKERS is a usage error, not a crash', () => {
    const r = runChild(
      `import { sharedPool } from ${JSON.stringify(poolModule)};
       try { sharedPool(); } catch (e) { console.log(e.kind, e.message); }`,
      { TARPUSH_WORKERS: 'lots' },
    );
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^usage TARPUSH_WORKERS/);
  });
});
