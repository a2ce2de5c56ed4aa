/**
 * Library-level baseline for bench/digest.ts, independent of the CLI: walks a legacy docker-save
 * archive and either gzip-describes every layer member with tarpush's compressor (`gzip`) or only
 * hashes it (`hash`). Prints one JSON line per layer.
 *
 *   node dist/bench/lib/describe-archive.js gzip|hash <archive.tar>
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import tar from 'tar-stream';
import { gzipDescribe } from '../../src/compress/gzip.js';
import { closeSharedPool } from '../../src/compress/pool.js';

async function main(): Promise<void> {
  const [mode, archive] = process.argv.slice(2);
  if ((mode !== 'gzip' && mode !== 'hash') || !archive) {
    console.error('usage: describe-archive gzip|hash <archive.tar>');
    process.exit(2);
  }
  const extract = tar.extract();
  createReadStream(archive).pipe(extract as unknown as NodeJS.WritableStream);
  for await (const entry of extract) {
    const body = Readable.from(entry as AsyncIterable<Buffer>);
    if (!entry.header.name.endsWith('/layer.tar')) {
      body.resume();
      await new Promise((r) => body.on('end', r));
      continue;
    }
    if (mode === 'gzip') {
      console.log(JSON.stringify({ member: entry.header.name, ...(await gzipDescribe(body)) }));
    } else {
      const hash = createHash('sha256');
      let size = 0;
      for await (const chunk of body) {
        hash.update(chunk as Buffer);
        size += (chunk as Buffer).length;
      }
      console.log(JSON.stringify({ member: entry.header.name, digest: `sha256:${hash.digest('hex')}`, size }));
    }
  }
  await closeSharedPool();
}

main().catch((e: unknown) => {
  console.error(`describe-archive: ${(e as Error).message}`);
  process.exit(1);
});
