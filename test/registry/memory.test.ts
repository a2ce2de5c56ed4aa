import assert from 'node:assert/strict';
import { createCipheriv, createHash } from 'node:crypto';
import { Readable, pipeline } from 'node:stream';
import { after, before, test } from 'node:test';
import { verifyStream } from '../../src/image/digest.js';
import { openRegistry, parseReference } from '../../src/registry/index.js';
import { startRegistry, type TestRegistry } from '../helpers/registry.js';
import { tempDir } from './fixtures.js';

const MiB = 1024 * 1024;
const BLOB = 256 * MiB;
const CHUNK = 64 * MiB;
const PARALLEL = 4;

let reg: TestRegistry;
let state: { path: string; remove(): Promise<void> };

before(async () => {
  reg = await startRegistry();
  state = await tempDir('tarpush-state-');
});
after(async () => {
  await reg?.stop();
  await state?.remove();
});

/** Incompressible bytes for `seed`, generated as they are read: the test itself holds no blob. */
function generated(seed: number): Readable {
  const cipher = createCipheriv('aes-256-ctr', createHash('sha256').update(`blob ${seed}`).digest(), Buffer.alloc(16));
  const zeros = Buffer.alloc(64 * 1024);
  let left = BLOB;
  return new Readable({
    read() {
      if (left === 0) return void this.push(null);
      const n = Math.min(zeros.length, left);
      left -= n;
      this.push(cipher.update(zeros.subarray(0, n)));
    },
  });
}

async function digestOf(seed: number): Promise<string> {
  const hash = createHash('sha256');
  for await (const piece of generated(seed)) hash.update(piece as Buffer);
  return `sha256:${hash.digest('hex')}`;
}

test(`${PARALLEL} parallel uploads of ${BLOB / MiB} MiB blobs in ${CHUNK / MiB} MiB chunks: memory does not follow chunk or blob size`, async (t) => {
  const seeds = Array.from({ length: PARALLEL }, (_, i) => Date.now() * 10 + i);
  const descs = await Promise.all(seeds.map(async (seed) => ({ seed, digest: await digestOf(seed), size: BLOB })));
  const client = openRegistry(parseReference(`${reg.host}/mem/app`), { chunkSize: CHUNK, stateDir: state.path, access: 'push' });
  let peak = 0;
  const sample = (): void => {
    peak = Math.max(peak, process.memoryUsage.rss());
  };
  try {
    await client.ping();
    const base = process.memoryUsage.rss();
    const timer = setInterval(sample, 10);
    try {
      const results = await Promise.all(
        descs.map((d) =>
          client.uploadBlob(d, async () => {
            const verified = verifyStream(d, 'generated');
            pipeline(generated(d.seed), verified, () => {});
            return verified;
          }),
        ),
      );
      for (const r of results) assert.equal(r.bytesSent, BLOB);
    } finally {
      clearInterval(timer);
      sample();
    }
    const growth = (peak - base) / MiB;
    t.diagnostic(`RSS ${(base / MiB).toFixed(0)} MiB before, peak ${(peak / MiB).toFixed(0)} MiB: growth ${growth.toFixed(1)} MiB`);
    // Buffering whole chunks would take at least PARALLEL * CHUNK = 256 MiB.
    assert.ok(growth < 60, `RSS grew by ${growth.toFixed(1)} MiB`);
    for (const d of descs) assert.equal(await client.headBlob(d.digest), BLOB);
  } finally {
    await client.close();
  }
});
