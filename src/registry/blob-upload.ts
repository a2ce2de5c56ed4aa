import type { Readable } from 'node:stream';
import { TarpushError } from '../errors.js';
import { checkInterrupted } from '../interrupt.js';
import type { Descriptor } from '../image/descriptor.js';
import { BlobMismatchError, type Digest } from '../image/digest.js';
import type { Progress } from '../progress/progress.js';
import { pullScope, pushScope } from './auth.js';
import type { RegistryClient, UploadResult } from './client.js';
import { AuthReplayNeeded, MAX_TRANSFER_FAILURES, describe, sleep } from './retry-rules.js';
import { SourceCursor } from './source-cursor.js';
import { headerValue, isRetryableNetworkError, type HttpResponse } from './transport.js';

/**
 * Blob uploads: sessions, cross-repository mounts, chunks streamed by PATCH, the final PUT, and
 * recovery within a run (ask the registry where the upload stands) and across runs (the saved
 * upload state). RegistryClient's upload methods delegate here.
 */

/**
 * Blobs up to this size go in one PUT, read into memory first so the source's verification has
 * passed before the PUT commits them. Larger ones stream in chunks and end with an empty PUT.
 */
const MONOLITHIC_MAX = 1024 * 1024;

export interface UploadSession {
  location: string;
  offset: number;
}

/** Upload errors after which the upload session is kept for a later run. */
const keepSession = new WeakSet<Error>();

/** A status from which an upload recovers by asking the registry where it stands. */
class RecoverableStatus extends Error {
  constructor(readonly status: number) {
    super(`HTTP ${status}`);
  }
}

/** Parses `Range: 0-1234` (inclusive end) into the next offset; `0-0` is read as nothing yet. */
export function parseUploadRange(value: string | undefined): number | undefined {
  if (!value) return undefined;
  const m = /^(?:bytes=)?(\d+)-(\d+)$/.exec(value.trim());
  if (!m) return undefined;
  const end = Number(m[2]);
  // Distribution answers "0-0" both for an empty upload and for one byte; a re-sent byte is harmless.
  return end === 0 ? 0 : end + 1;
}

export async function mountBlob(
  client: RegistryClient,
  digest: Digest,
  fromRepository: string,
): Promise<{ mounted: true } | { mounted: false; session: UploadSession }> {
  const q = new URLSearchParams({ mount: digest, from: fromRepository });
  const res = await client.call({
    method: 'POST',
    url: `/v2/${client.repository}/blobs/uploads/?${q}`,
    headers: { 'content-length': '0' },
    scopes: [pushScope(client.repository), pullScope(fromRepository)],
  });
  if (res.status === 201) {
    await res.dump();
    return { mounted: true };
  }
  if (res.status === 202) {
    return { mounted: false, session: await sessionFrom(client, res) };
  }
  throw await client.responseError(res, `mounting blob ${digest} from ${fromRepository}`);
}

export async function startUpload(client: RegistryClient): Promise<UploadSession> {
  const res = await client.call({
    method: 'POST',
    url: `/v2/${client.repository}/blobs/uploads/`,
    headers: { 'content-length': '0' },
  });
  if (res.status !== 202) throw await client.responseError(res, 'starting a blob upload');
  return sessionFrom(client, res);
}

async function sessionFrom(client: RegistryClient, res: HttpResponse): Promise<UploadSession> {
  await res.dump();
  const loc = headerValue(res.headers, 'location');
  if (!loc) throw new TarpushError('registry', `${client.where}: the registry started an upload without a Location`);
  const min = Number(headerValue(res.headers, 'oci-chunk-min-length') ?? 0);
  if (Number.isSafeInteger(min) && min > client.chunkSize) {
    client.transport.debug(`${client.registry} wants chunks of at least ${min} bytes`);
    client.chunkSize = min;
  }
  return { location: new URL(loc, res.url).href, offset: 0 };
}

export async function uploadStatus(client: RegistryClient, location: string): Promise<UploadSession | undefined> {
  const res = await client.call({ method: 'GET', url: location });
  await res.dump();
  if (res.status === 404 || res.status === 400) return undefined;
  if (res.status !== 204 && res.status !== 200) throw await client.responseError(res, 'checking an upload');
  const loc = headerValue(res.headers, 'location');
  return {
    location: loc ? new URL(loc, res.url).href : location,
    offset: parseUploadRange(headerValue(res.headers, 'range')) ?? 0,
  };
}

export async function cancelUpload(client: RegistryClient, location: string): Promise<void> {
  try {
    const res = await client.call({ method: 'DELETE', url: location });
    await res.dump();
  } catch {
    // Best effort: registries purge abandoned uploads themselves.
  }
}

export async function uploadBlob(
  client: RegistryClient,
  desc: Pick<Descriptor, 'digest' | 'size'>,
  open: () => Promise<Readable>,
  progress?: Progress,
  opts: { mountFrom?: string[] } = {},
): Promise<UploadResult> {
  const state = client.state;
  const key = [client.registry, client.repository, desc.digest] as const;
  let session: UploadSession | undefined;
  let resumedFrom = 0;

  const saved = state ? await state.load(...key) : undefined;
  if (saved) {
    try {
      session = await uploadStatus(client, saved.location);
    } catch (e) {
      client.transport.debug(`cannot resume the earlier upload of ${desc.digest}: ${(e as Error).message}`);
    }
    if (session) {
      resumedFrom = session.offset;
      client.transport.debug(`resuming the upload of ${desc.digest} at byte ${session.offset} of ${desc.size}`);
    } else {
      await state!.remove(...key);
    }
  }
  if (!session) {
    for (const from of opts.mountFrom ?? []) {
      if (from === client.repository) continue;
      const mount = await mountBlob(client, desc.digest, from);
      if (mount.mounted) {
        if (session) await cancelUpload(client, session.location);
        return { how: 'mounted', bytesSent: 0, resumedFrom: 0 };
      }
      // Refused: the session the registry opened instead serves for the upload.
      if (session) await cancelUpload(client, session.location);
      session = mount.session;
    }
    session ??= await startUpload(client);
  }

  const cursor = new SourceCursor(open, desc, client.where);
  let bytesSent = 0;
  const sent = (n: number): void => {
    bytesSent += n;
    progress?.advance(n);
  };
  let failures = 0;
  let { location, offset } = session;
  progress?.reset(offset);
  const persist = async (): Promise<void> => {
    if (state) await state.save({ registry: client.registry, repository: client.repository, digest: desc.digest, size: desc.size, location, offset });
  };
  const abandon = async (): Promise<void> => {
    await cancelUpload(client, location);
    if (state) await state.remove(...key);
  };

  try {
    for (;;) {
      try {
        await cursor.seek(offset);
        // Ctrl-C stops between chunks: a half-sent chunk would cost the whole session.
        if (offset < desc.size) checkInterrupted(client.where);
        if (offset === 0 && desc.size <= Math.min(client.chunkSize, MONOLITHIC_MAX)) {
          const data = await cursor.read(desc.size);
          await cursor.finish();
          await finishUpload(client, location, desc.digest, data, sent);
          break;
        }
        if (offset < desc.size) {
          const length = Math.min(client.chunkSize, desc.size - offset);
          const body = await cursor.body(length, sent);
          const next = await patchChunk(client, location, offset, length, body);
          location = next.location;
          if (next.offset !== offset + length) {
            client.transport.debug(`registry confirmed ${next.offset} bytes where ${offset + length} were sent`);
            progress?.reset(next.offset);
          }
          offset = next.offset;
          failures = 0;
          await persist();
          continue;
        }
        // Every byte is with the registry; only a source that ended cleanly (verified) may commit them.
        await cursor.finish();
        await finishUpload(client, location, desc.digest, Buffer.alloc(0), sent);
        break;
      } catch (caught) {
        // A request whose body broke because the source failed reports the source's error.
        const e = cursor.failure ?? caught;
        if (!recoverable(e)) throw e;
        if (++failures > MAX_TRANSFER_FAILURES) throw exhausted(client, e, desc.digest);
        const delay = client.backoff(failures);
        client.transport.debug(`upload of ${desc.digest} interrupted at byte ${offset} (${describe(e)}); checking its status in ${delay} ms`);
        await sleep(delay);
        const status = await uploadStatus(client, location).catch((e2: unknown) => {
          if (recoverable(e2)) return 'unknown' as const;
          throw e2;
        });
        if (status === 'unknown') continue; // try the same chunk again, status next time
        if (!status) {
          if ((await client.headBlob(desc.digest)) !== undefined) break; // the final PUT did land
          client.transport.debug(`the registry dropped the upload of ${desc.digest}; starting over`);
          const fresh = await startUpload(client);
          location = fresh.location;
          offset = 0;
        } else {
          location = status.location;
          offset = status.offset;
        }
        progress?.reset(offset);
        await persist();
      }
    }
  } catch (e) {
    cursor.close();
    if (e instanceof BlobMismatchError) {
      // The bytes are wrong: nothing of this upload may be finalised or resumed later.
      await abandon();
      throw e;
    }
    // A registry that refused the upload will not take the rest of it later either; anything
    // else (network, the source, an interruption) leaves the session for the next run.
    if (e instanceof TarpushError && (e.kind === 'registry' || e.kind === 'auth') && !keepSession.has(e)) {
      await abandon();
    }
    throw e;
  }
  cursor.close();
  if (state) await state.remove(...key);
  return { how: 'uploaded', bytesSent, resumedFrom };
}

/** The error to report when an upload keeps failing in ways it normally recovers from. */
function exhausted(client: RegistryClient, e: unknown, digest: Digest): unknown {
  if (e instanceof RecoverableStatus) {
    const err = new TarpushError('registry', `${client.where}: uploading blob ${digest}: HTTP ${e.status} (retries exhausted)`);
    // The session may well survive the registry's bad moment: keep it for the next run.
    keepSession.add(err);
    return err;
  }
  if (e instanceof AuthReplayNeeded) {
    return new TarpushError('auth', `${client.registry} kept refusing new tokens for ${client.where} during the upload of ${digest}`);
  }
  return e;
}

function recoverable(e: unknown): boolean {
  return e instanceof RecoverableStatus || e instanceof AuthReplayNeeded || isRetryableNetworkError(e);
}

/** Sends `length` bytes streamed from `body` at `offset`; returns where the upload now stands. */
async function patchChunk(
  client: RegistryClient,
  location: string,
  offset: number,
  length: number,
  body: Readable,
): Promise<UploadSession> {
  const res = await client.call({
    method: 'PATCH',
    url: location,
    headers: {
      'content-type': 'application/octet-stream',
      'content-length': String(length),
      'content-range': `${offset}-${offset + length - 1}`,
    },
    body,
  }).finally(() => body.destroy()); // an early answer (401, 5xx) leaves it unread: pull no more
  if (res.status === 202 || res.status === 204) {
    await res.dump();
    const loc = headerValue(res.headers, 'location');
    const confirmed = parseUploadRange(headerValue(res.headers, 'range'));
    return {
      location: loc ? new URL(loc, res.url).href : location,
      offset: confirmed !== undefined && confirmed > 0 ? confirmed : offset + length,
    };
  }
  if (res.status === 416 || res.status === 408 || res.status === 429 || res.status >= 500) {
    await res.dump();
    throw new RecoverableStatus(res.status);
  }
  throw await client.responseError(res, 'uploading a blob chunk');
}

/** Commits the upload with its last (already verified) bytes, `data`, possibly none. */
async function finishUpload(
  client: RegistryClient,
  location: string,
  digest: Digest,
  data: Buffer,
  sent: (n: number) => void,
): Promise<void> {
  const url = new URL(location);
  url.searchParams.set('digest', digest);
  const res = await client.call({
    method: 'PUT',
    url: url.href,
    headers: { 'content-type': 'application/octet-stream', 'content-length': String(data.length) },
    body: data,
    // A PUT cut off mid-body costs its session on some registries; uploadBlob recovers by
    // asking for the upload's status, which a blind replay here would not.
    retry: data.length === 0,
  });
  if (res.status === 201 || res.status === 204 || res.status === 200) {
    sent(data.length);
    await res.dump();
    const got = headerValue(res.headers, 'docker-content-digest');
    if (got && got !== digest) {
      throw new TarpushError('registry', `${client.where}: the registry stored blob ${digest} as ${got}`);
    }
    return;
  }
  if (res.status === 416 || res.status === 408 || res.status === 429 || res.status >= 500) {
    await res.dump();
    throw new RecoverableStatus(res.status);
  }
  throw await client.responseError(res, `completing the upload of blob ${digest}`);
}
