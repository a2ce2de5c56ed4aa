import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { after, test } from 'node:test';
import { createGzipStream } from '../../src/compress/gzip.js';
import { closeSharedPool } from '../../src/compress/pool.js';
import { mixedData } from './data.js';

const MiB = 1024 * 1024;

after(closeSharedPool);

/** 200 MiB of layer-like bytes produced on demand, never all at once. */
function generated(total: number): Readable {
  const sources = [mixedData(4 * MiB, 21), mixedData(4 * MiB, 22), Buffer.alloc(4 * MiB, 'tarpush ')];
  let sent = 0;
  let i = 0;
  return new Readable({
    read() {
      if (sent >= total) {
        this.push(null);
        return;
      }
      const src = sources[i++ % sources.length]!;
      const n = Math.min(src.length, total - sent);
      sent += n;
      this.push(src.subarray(0, n));
    },
  });
}

test('memory stays flat while compressing 200 MiB through a slow consumer', async (t) => {
  // Warm up: workers started and JIT-compiled before the baseline is taken.
  await pipeline(generated(8 * MiB), createGzipStream(), new Writable({ write: (_c, _e, cb) => cb() }));
  globalThis.gc?.();
  const baseline = process.memoryUsage().rss;
  let peak = baseline;
  const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 50);
  const hash = createHash('sha256');
  let out = 0;
  let writes = 0;
  try {
    await pipeline(
      generated(200 * MiB),
      createGzipStream(),
      new Writable({
        highWaterMark: 64 * 1024,
        write(chunk: Buffer, _e, cb) {
          hash.update(chunk);
          out += chunk.length;
          // Every so often the consumer stalls, as an upload does, so backpressure must hold.
          if (++writes % 16 === 0) setTimeout(cb, 5);
          else cb();
        },
      }),
    );
  } finally {
    clearInterval(timer);
  }
  peak = Math.max(peak, process.memoryUsage().rss);
  const growth = (peak - baseline) / MiB;
  t.diagnostic(`RSS baseline ${(baseline / MiB).toFixed(0)} MiB, growth ${growth.toFixed(1)} MiB`);
  assert.ok(out > 0 && out < 200 * MiB);
  assert.ok(growth < 100, `RSS grew by ${growth.toFixed(1)} MiB`);
});
