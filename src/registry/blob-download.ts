import { PassThrough, type Readable } from 'node:stream';
import { TarpushError } from '../errors.js';
import type { Descriptor } from '../image/descriptor.js';
import type { Digest } from '../image/digest.js';
import type { RegistryClient } from './client.js';
import { MAX_TRANSFER_FAILURES, sleep } from './retry-rules.js';
import { isRetryableNetworkError, type HttpResponse } from './transport.js';

/**
 * Blob downloads, kept apart from the client because resuming a broken download (Range from
 * the last byte received, skipping what a server that ignores Range sends again) is most of the
 * work. RegistryClient.openBlob delegates here.
 */

async function getBlob(client: RegistryClient, digest: Digest, offset: number): Promise<HttpResponse> {
  const headers: Record<string, string> = {};
  if (offset > 0) headers.range = `bytes=${offset}-`;
  const res = await client.call({ method: 'GET', url: client.path('blobs', digest), headers, followRedirects: true });
  if (res.status === 200 || (offset > 0 && res.status === 206)) return res;
  if (res.status === 404) {
    await res.dump();
    throw new TarpushError('registry', `${client.where}: blob ${digest} not found`);
  }
  throw await client.responseError(res, `downloading blob ${digest}`);
}

export async function openBlob(
  client: RegistryClient,
  desc: Pick<Descriptor, 'digest' | 'size'>,
  opts: { offset?: number } = {},
): Promise<Readable> {
  let pos = opts.offset ?? 0;
  let res = await getBlob(client, desc.digest, pos);
  const out = new PassThrough();
  let current: Readable | undefined;
  out.on('close', () => current?.destroy());

  const pump = async (): Promise<void> => {
    let failures = 0;
    for (;;) {
      // A server ignoring Range sends everything again: skip what we already have.
      let skip = res.status === 200 ? pos : 0;
      current = res.body;
      try {
        for await (const raw of res.body) {
          let chunk = raw as Buffer;
          if (skip > 0) {
            const drop = Math.min(skip, chunk.length);
            chunk = chunk.subarray(drop);
            skip -= drop;
            if (chunk.length === 0) continue;
          }
          pos += chunk.length;
          failures = 0;
          if (!out.write(chunk)) {
            await new Promise<void>((resolve) => {
              const done = (): void => {
                out.off('drain', done);
                out.off('close', done);
                resolve();
              };
              out.on('drain', done);
              out.on('close', done);
            });
          }
          if (out.destroyed) return;
        }
        if (desc.size >= 0 && pos < desc.size) {
          throw Object.assign(new Error(`stream ended after ${pos} of ${desc.size} bytes`), { code: 'UND_ERR_SOCKET' });
        }
        out.end();
        return;
      } catch (e) {
        if (out.destroyed) return;
        if (!isRetryableNetworkError(e) || ++failures > MAX_TRANSFER_FAILURES) {
          out.destroy(client.transport.networkError(e, client.transport.resolve(client.path('blobs', desc.digest))));
          return;
        }
        client.transport.debug(`download of ${desc.digest} broke after ${pos} bytes; resuming from there`);
        await sleep(client.backoff(failures));
        try {
          res = await getBlob(client, desc.digest, pos);
        } catch (e2) {
          out.destroy(e2 as Error);
          return;
        }
        if (out.destroyed) {
          res.body.destroy();
          return;
        }
      }
    }
  };
  pump().catch((e: unknown) => out.destroy(e as Error));
  return out;
}
