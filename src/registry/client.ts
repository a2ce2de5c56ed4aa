import { PassThrough, Readable } from 'node:stream';
import { TarpushError } from '../errors.js';
import { checkInterrupted } from '../interrupt.js';
import { MAX_DOCUMENT_BYTES } from '../image/content.js';
import type { Descriptor } from '../image/descriptor.js';
import { BlobMismatchError, sha256, type Digest } from '../image/digest.js';
import { MediaType } from '../image/mediatypes.js';
import type { Progress } from '../progress/progress.js';
import { pullScope, pushScope, type Authenticator } from './auth.js';
import { findChallenge, parseChallenges } from './challenge.js';
import { redactUrl, scrub } from './redact.js';
import { SourceCursor } from './source-cursor.js';
import {
  headerValue,
  isRetryableNetworkError,
  type HttpRequest,
  type HttpResponse,
  type Transport,
} from './transport.js';
import type { UploadStateStore } from './upload-state.js';

/** Every manifest and index type tarpush can read, for Accept headers. */
export const MANIFEST_ACCEPT = [
  MediaType.ociIndex,
  MediaType.ociManifest,
  MediaType.dockerManifestList,
  MediaType.dockerManifest,
];

export const DEFAULT_CHUNK_SIZE = 16 * 1024 * 1024;
/**
 * Blobs up to this size go in one PUT, read into memory first so the source's verification has
 * passed before the PUT commits them. Larger ones stream in chunks and end with an empty PUT.
 */
const MONOLITHIC_MAX = 1024 * 1024;
/** Consecutive failures without progress after which a transfer gives up. */
const MAX_TRANSFER_FAILURES = 5;

export interface ClientConfig {
  /** Registry name for messages and state (`docker.io`, `127.0.0.1:5000`). */
  registry: string;
  repository: string;
  transport: Transport;
  auth: Authenticator;
  /** 'push' asks for pull,push tokens from the start (one token for a whole push). */
  access?: 'pull' | 'push';
  chunkSize?: number;
  state?: UploadStateStore;
  /** Backoff before retrying a broken transfer, first step in ms (default 500). */
  retryBaseMs?: number;
}

export interface ManifestResponse {
  bytes: Buffer;
  mediaType: string;
  /** Docker-Content-Digest when sent, else the sha256 of the bytes. */
  digest: Digest;
}

export interface ManifestHead {
  digest?: Digest;
  mediaType?: string;
  size?: number;
}

export interface UploadResult {
  /** How the blob got there. */
  how: 'uploaded' | 'mounted' | 'exists';
  /** Bytes this run actually sent. */
  bytesSent: number;
  /** Offset an earlier run's upload was resumed from (0 when none). */
  resumedFrom: number;
}

interface UploadSession {
  location: string;
  offset: number;
}

/** Upload errors after which the upload session is kept for a later run. */
const keepSession = new WeakSet<Error>();

/** A request whose stream body was consumed before the registry asked for new authorization. */
class AuthReplayNeeded extends Error {}

/** A status from which an upload recovers by asking the registry where it stands. */
class RecoverableStatus extends Error {
  constructor(readonly status: number) {
    super(`HTTP ${status}`);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
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

/** Operations on one repository of one registry. */
export class RegistryClient {
  readonly registry: string;
  readonly repository: string;
  /** `registry/repository`, for messages. */
  readonly where: string;
  readonly transport: Transport;
  readonly auth: Authenticator;
  chunkSize: number;
  private readonly scopes: string[];
  private readonly state?: UploadStateStore;
  private readonly retryBaseMs: number;
  private pinged?: Promise<void>;

  constructor(cfg: ClientConfig) {
    this.registry = cfg.registry;
    this.repository = cfg.repository;
    this.where = `${cfg.registry}/${cfg.repository}`;
    this.transport = cfg.transport;
    this.auth = cfg.auth;
    this.chunkSize = cfg.chunkSize ?? DEFAULT_CHUNK_SIZE;
    this.scopes = [cfg.access === 'push' ? pushScope(cfg.repository) : pullScope(cfg.repository)];
    if (cfg.state) this.state = cfg.state;
    this.retryBaseMs = cfg.retryBaseMs ?? 500;
  }

  private path(kind: 'blobs' | 'manifests', ref: string): string {
    return `/v2/${this.repository}/${kind}/${ref}`;
  }

  /**
   * GET /v2/: decides http vs https for loopback hosts and learns the auth scheme before any
   * request with a body is sent (a body stream cannot be replayed after a 401).
   */
  ping(): Promise<void> {
    this.pinged ??= (async () => {
      const res = await this.transport.send({ method: 'GET', url: '/v2/' });
      if (res.status === 401) {
        await this.auth.challenged(res.headers, [], this.where, undefined);
        await res.dump();
        return;
      }
      const body = res.status === 400 ? await res.text(4096).catch(() => '') : (await res.dump(), '');
      if (/HTTPS server/i.test(body)) {
        throw new TarpushError('network', `${this.registry} speaks HTTPS, not plain HTTP (drop --plain-http)`);
      }
      if (res.status >= 200 && res.status < 300) {
        this.auth.noAuthNeeded();
        return;
      }
      if (res.status === 404) {
        throw new TarpushError('registry', `${this.registry} is not a container registry (GET /v2/ answered 404)`);
      }
      // Some registries answer the ping oddly but serve the API; learn auth on the first real call.
    })();
    this.pinged.catch(() => {
      this.pinged = undefined;
    });
    return this.pinged;
  }

  /**
   * Sends a request with authorization, answering 401 challenges (once to learn the scheme or
   * refresh a token). Redirects are followed for GET/HEAD, without credentials to other hosts.
   */
  async call(req: HttpRequest & { scopes?: string[]; followRedirects?: boolean }): Promise<HttpResponse> {
    await this.ping();
    const scopes = req.scopes ?? this.scopes;
    let url = req.url;
    let redirects = 0;
    for (let round = 0; ; round++) {
      const target = this.transport.resolve(url);
      const onRegistry = target.host === this.transport.host;
      const authz = onRegistry ? await this.auth.header(scopes, this.where) : undefined;
      const headers: Record<string, string> = { ...req.headers };
      if (authz) headers.authorization = authz;
      const res = await this.transport.send({ ...req, url: target.href, headers });
      if (req.followRedirects && [301, 302, 303, 307, 308].includes(res.status) && res.headers.location) {
        await res.dump();
        if (++redirects > 5) throw new TarpushError('registry', `${this.where}: too many redirects for ${req.method} ${redactUrl(req.url)}`);
        url = new URL(headerValue(res.headers, 'location')!, target).href;
        this.transport.debug(`redirected to ${redactUrl(url)}`);
        round--;
        continue;
      }
      if (res.status !== 401 || !onRegistry) return res;
      const problem = findChallenge(parseChallenges(res.headers['www-authenticate']), 'bearer')?.params.error;
      const detail = (await this.errorDetail(res)) + (problem ? `; ${problem}` : '');
      const retry = round < 2 && (await this.auth.challenged(res.headers, scopes, this.where, authz));
      if (!retry) throw await this.auth.refusal(this.where, detail);
      if (req.body instanceof Readable) throw new AuthReplayNeeded('authorization expired during an upload');
    }
  }

  /** A short description of an error response: registry error codes, or the HTTP status. */
  private async errorDetail(res: HttpResponse): Promise<string> {
    const parsed = await this.readErrors(res);
    if (parsed.length) return parsed.map((e) => e.text).join('; ');
    return `HTTP ${res.status}`;
  }

  private async readErrors(res: HttpResponse): Promise<{ code: string; text: string }[]> {
    let text = '';
    try {
      text = await res.text(64 * 1024);
    } catch {
      return [];
    }
    try {
      const json = JSON.parse(text) as { errors?: { code?: unknown; message?: unknown; detail?: unknown }[] };
      if (!Array.isArray(json.errors)) return [];
      return json.errors.map((e) => {
        const code = typeof e.code === 'string' && e.code ? e.code : '';
        const message = typeof e.message === 'string' ? e.message : '';
        let t = code ? `${code}: ${message}`.replace(/: $/, '') : `HTTP ${res.status}: ${message}`.replace(/: $/, '');
        const detail = typeof e.detail === 'string' ? e.detail : e.detail !== undefined && e.detail !== null ? JSON.stringify(e.detail) : '';
        if (detail && detail.length <= 200) t += ` (${detail})`;
        return { code, text: scrub(t, this.auth.secrets) };
      });
    } catch {
      return [];
    }
  }

  /** Turns an unexpected response into a one-line TarpushError (auth kind for DENIED/UNAUTHORIZED). */
  async responseError(res: HttpResponse, what: string): Promise<TarpushError> {
    const errors = await this.readErrors(res);
    const retried = res.status === 408 || res.status === 429 || res.status >= 500;
    const suffix = retried ? ' (retries exhausted)' : '';
    if (errors.length) {
      const auth = errors.some((e) => e.code === 'DENIED' || e.code === 'UNAUTHORIZED') || res.status === 403;
      const status = retried ? `HTTP ${res.status}${suffix}: ` : '';
      return new TarpushError(auth ? 'auth' : 'registry', `${this.where}: ${what}: ${status}${errors.map((e) => e.text).join('; ')}`);
    }
    const kind = res.status === 403 ? 'auth' : 'registry';
    return new TarpushError(kind, `${this.where}: ${what}: HTTP ${res.status}${suffix}`);
  }

  // ---------------------------------------------------------------- blobs

  /** Size of a blob the registry has, or undefined when it has not. */
  async headBlob(digest: Digest): Promise<number | undefined> {
    const res = await this.call({ method: 'HEAD', url: this.path('blobs', digest), followRedirects: true });
    await res.dump();
    if (res.status === 404) return undefined;
    if (res.status !== 200) throw await this.responseError(res, `checking blob ${digest}`);
    const len = headerValue(res.headers, 'content-length');
    return len !== undefined ? Number(len) : -1;
  }

  private async getBlob(digest: Digest, offset: number): Promise<HttpResponse> {
    const headers: Record<string, string> = {};
    if (offset > 0) headers.range = `bytes=${offset}-`;
    const res = await this.call({ method: 'GET', url: this.path('blobs', digest), headers, followRedirects: true });
    if (res.status === 200 || (offset > 0 && res.status === 206)) return res;
    if (res.status === 404) {
      await res.dump();
      throw new TarpushError('registry', `${this.where}: blob ${digest} not found`);
    }
    throw await this.responseError(res, `downloading blob ${digest}`);
  }

  /**
   * The blob's raw bytes as one stream. A download that breaks is resumed with a Range request
   * from the byte it stopped at, so callers never see the break.
   */
  async openBlob(desc: Pick<Descriptor, 'digest' | 'size'>, opts: { offset?: number } = {}): Promise<Readable> {
    let pos = opts.offset ?? 0;
    let res = await this.getBlob(desc.digest, pos);
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
            out.destroy(this.transport.networkError(e, this.transport.resolve(this.path('blobs', desc.digest))));
            return;
          }
          this.transport.debug(`download of ${desc.digest} broke after ${pos} bytes; resuming from there`);
          await sleep(this.backoff(failures));
          try {
            res = await this.getBlob(desc.digest, pos);
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

  private backoff(failures: number): number {
    const exp = Math.min(30_000, this.retryBaseMs * 2 ** (failures - 1));
    return Math.round(exp / 2 + Math.random() * (exp / 2));
  }

  /**
   * Asks the registry to mount `digest` from another repository of the same registry. Returns
   * `mounted`, or the upload session the registry opened instead (202) for the caller to use.
   */
  async mountBlob(digest: Digest, fromRepository: string): Promise<{ mounted: true } | { mounted: false; session: UploadSession }> {
    const q = new URLSearchParams({ mount: digest, from: fromRepository });
    const res = await this.call({
      method: 'POST',
      url: `/v2/${this.repository}/blobs/uploads/?${q}`,
      headers: { 'content-length': '0' },
      scopes: [pushScope(this.repository), pullScope(fromRepository)],
    });
    if (res.status === 201) {
      await res.dump();
      return { mounted: true };
    }
    if (res.status === 202) {
      return { mounted: false, session: await this.sessionFrom(res) };
    }
    throw await this.responseError(res, `mounting blob ${digest} from ${fromRepository}`);
  }

  /** Opens an upload session. */
  async startUpload(): Promise<UploadSession> {
    const res = await this.call({
      method: 'POST',
      url: `/v2/${this.repository}/blobs/uploads/`,
      headers: { 'content-length': '0' },
    });
    if (res.status !== 202) throw await this.responseError(res, 'starting a blob upload');
    return this.sessionFrom(res);
  }

  private async sessionFrom(res: HttpResponse): Promise<UploadSession> {
    await res.dump();
    const loc = headerValue(res.headers, 'location');
    if (!loc) throw new TarpushError('registry', `${this.where}: the registry started an upload without a Location`);
    const min = Number(headerValue(res.headers, 'oci-chunk-min-length') ?? 0);
    if (Number.isSafeInteger(min) && min > this.chunkSize) {
      this.transport.debug(`${this.registry} wants chunks of at least ${min} bytes`);
      this.chunkSize = min;
    }
    return { location: new URL(loc, res.url).href, offset: 0 };
  }

  /** Where an upload stands, or undefined when the registry no longer knows it. */
  async uploadStatus(location: string): Promise<UploadSession | undefined> {
    const res = await this.call({ method: 'GET', url: location });
    await res.dump();
    if (res.status === 404 || res.status === 400) return undefined;
    if (res.status !== 204 && res.status !== 200) throw await this.responseError(res, 'checking an upload');
    const loc = headerValue(res.headers, 'location');
    return {
      location: loc ? new URL(loc, res.url).href : location,
      offset: parseUploadRange(headerValue(res.headers, 'range')) ?? 0,
    };
  }

  async cancelUpload(location: string): Promise<void> {
    try {
      const res = await this.call({ method: 'DELETE', url: location });
      await res.dump();
    } catch {
      // Best effort: registries purge abandoned uploads themselves.
    }
  }

  /**
   * Uploads a blob from `open()` (a verified stream). Small blobs go in one PUT; larger ones
   * stream in chunks (memory does not grow with chunk or blob size), each confirmed chunk
   * recorded so a later run can resume, and are committed by an empty PUT only once the source
   * has ended verified. Within a run, failures are recovered by asking the registry for the
   * upload's status and reopening the source at the offset it reports.
   */
  async uploadBlob(
    desc: Pick<Descriptor, 'digest' | 'size'>,
    open: () => Promise<Readable>,
    progress?: Progress,
    opts: { mountFrom?: string[] } = {},
  ): Promise<UploadResult> {
    const state = this.state;
    const key = [this.registry, this.repository, desc.digest] as const;
    let session: UploadSession | undefined;
    let resumedFrom = 0;

    const saved = state ? await state.load(...key) : undefined;
    if (saved) {
      try {
        session = await this.uploadStatus(saved.location);
      } catch (e) {
        this.transport.debug(`cannot resume the earlier upload of ${desc.digest}: ${(e as Error).message}`);
      }
      if (session) {
        resumedFrom = session.offset;
        this.transport.debug(`resuming the upload of ${desc.digest} at byte ${session.offset} of ${desc.size}`);
      } else {
        await state!.remove(...key);
      }
    }
    if (!session) {
      for (const from of opts.mountFrom ?? []) {
        if (from === this.repository) continue;
        const mount = await this.mountBlob(desc.digest, from);
        if (mount.mounted) {
          if (session) await this.cancelUpload(session.location);
          return { how: 'mounted', bytesSent: 0, resumedFrom: 0 };
        }
        // Refused: the session the registry opened instead serves for the upload.
        if (session) await this.cancelUpload(session.location);
        session = mount.session;
      }
      session ??= await this.startUpload();
    }

    const cursor = new SourceCursor(open, desc, this.where);
    let bytesSent = 0;
    const sent = (n: number): void => {
      bytesSent += n;
      progress?.advance(n);
    };
    let failures = 0;
    let { location, offset } = session;
    progress?.reset(offset);
    const persist = async (): Promise<void> => {
      if (state) await state.save({ registry: this.registry, repository: this.repository, digest: desc.digest, size: desc.size, location, offset });
    };
    const abandon = async (): Promise<void> => {
      await this.cancelUpload(location);
      if (state) await state.remove(...key);
    };

    try {
      for (;;) {
        try {
          await cursor.seek(offset);
          // Ctrl-C stops between chunks: a half-sent chunk would cost the whole session.
          if (offset < desc.size) checkInterrupted(this.where);
          if (offset === 0 && desc.size <= Math.min(this.chunkSize, MONOLITHIC_MAX)) {
            const data = await cursor.read(desc.size);
            await cursor.finish();
            await this.finishUpload(location, desc.digest, data, sent);
            break;
          }
          if (offset < desc.size) {
            const length = Math.min(this.chunkSize, desc.size - offset);
            const body = await cursor.body(length, sent);
            const next = await this.patchChunk(location, offset, length, body);
            location = next.location;
            if (next.offset !== offset + length) {
              this.transport.debug(`registry confirmed ${next.offset} bytes where ${offset + length} were sent`);
              progress?.reset(next.offset);
            }
            offset = next.offset;
            failures = 0;
            await persist();
            continue;
          }
          // Every byte is with the registry; only a source that ended cleanly (verified) may commit them.
          await cursor.finish();
          await this.finishUpload(location, desc.digest, Buffer.alloc(0), sent);
          break;
        } catch (caught) {
          // A request whose body broke because the source failed reports the source's error.
          const e = cursor.failure ?? caught;
          if (!this.recoverable(e)) throw e;
          if (++failures > MAX_TRANSFER_FAILURES) throw this.exhausted(e, desc.digest);
          const delay = this.backoff(failures);
          this.transport.debug(`upload of ${desc.digest} interrupted at byte ${offset} (${describe(e)}); checking its status in ${delay} ms`);
          await sleep(delay);
          const status = await this.uploadStatus(location).catch((e2: unknown) => {
            if (this.recoverable(e2)) return 'unknown' as const;
            throw e2;
          });
          if (status === 'unknown') continue; // try the same chunk again, status next time
          if (!status) {
            if ((await this.headBlob(desc.digest)) !== undefined) break; // the final PUT did land
            this.transport.debug(`the registry dropped the upload of ${desc.digest}; starting over`);
            const fresh = await this.startUpload();
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
  private exhausted(e: unknown, digest: Digest): unknown {
    if (e instanceof RecoverableStatus) {
      const err = new TarpushError('registry', `${this.where}: uploading blob ${digest}: HTTP ${e.status} (retries exhausted)`);
      // The session may well survive the registry's bad moment: keep it for the next run.
      keepSession.add(err);
      return err;
    }
    if (e instanceof AuthReplayNeeded) {
      return new TarpushError('auth', `${this.registry} kept refusing new tokens for ${this.where} during the upload of ${digest}`);
    }
    return e;
  }

  private recoverable(e: unknown): boolean {
    return e instanceof RecoverableStatus || e instanceof AuthReplayNeeded || isRetryableNetworkError(e);
  }

  /** Sends `length` bytes streamed from `body` at `offset`; returns where the upload now stands. */
  private async patchChunk(location: string, offset: number, length: number, body: Readable): Promise<UploadSession> {
    const res = await this.call({
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
    throw await this.responseError(res, 'uploading a blob chunk');
  }

  /** Commits the upload with its last (already verified) bytes, `data`, possibly none. */
  private async finishUpload(location: string, digest: Digest, data: Buffer, sent: (n: number) => void): Promise<void> {
    const url = new URL(location);
    url.searchParams.set('digest', digest);
    const res = await this.call({
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
        throw new TarpushError('registry', `${this.where}: the registry stored blob ${digest} as ${got}`);
      }
      return;
    }
    if (res.status === 416 || res.status === 408 || res.status === 429 || res.status >= 500) {
      await res.dump();
      throw new RecoverableStatus(res.status);
    }
    throw await this.responseError(res, `completing the upload of blob ${digest}`);
  }

  // ------------------------------------------------------------ manifests

  async getManifest(ref: string, accept: string[] = MANIFEST_ACCEPT): Promise<ManifestResponse> {
    for (let failures = 0; ; ) {
      const res = await this.call({ method: 'GET', url: this.path('manifests', ref), headers: { accept: accept.join(', ') } });
      if (res.status === 404) {
        const detail = await this.errorDetail(res);
        throw new TarpushError('registry', `${this.where}: manifest ${ref} not found (${detail})`);
      }
      if (res.status !== 200) throw await this.responseError(res, `fetching manifest ${ref}`);
      const chunks: Buffer[] = [];
      let total = 0;
      try {
        for await (const c of res.body) {
          total += (c as Buffer).length;
          if (total > MAX_DOCUMENT_BYTES) {
            res.body.destroy();
            throw new TarpushError('registry', `${this.where}: manifest ${ref} is larger than ${MAX_DOCUMENT_BYTES} bytes`);
          }
          chunks.push(c as Buffer);
        }
      } catch (e) {
        // A document is small and the GET idempotent: a broken body is simply fetched again.
        if (!isRetryableNetworkError(e) || ++failures >= MAX_TRANSFER_FAILURES) {
          throw this.transport.networkError(e, res.url ? new URL(res.url) : this.transport.resolve('/'));
        }
        this.transport.debug(`reading manifest ${ref} broke (${describe(e)}); fetching it again`);
        await sleep(this.backoff(failures));
        continue;
      }
      const bytes = Buffer.concat(chunks);
      const contentType = (headerValue(res.headers, 'content-type') ?? '').split(';')[0]!.trim();
      const digest = headerValue(res.headers, 'docker-content-digest') ?? sha256(bytes);
      return { bytes, mediaType: contentType, digest };
    }
  }

  /** Digest, media type and size of a manifest, or undefined when the registry has none. */
  async headManifest(ref: string, accept: string[] = MANIFEST_ACCEPT): Promise<ManifestHead | undefined> {
    const res = await this.call({ method: 'HEAD', url: this.path('manifests', ref), headers: { accept: accept.join(', ') } });
    await res.dump();
    if (res.status === 404) return undefined;
    if (res.status !== 200) throw await this.responseError(res, `checking manifest ${ref}`);
    const head: ManifestHead = {};
    const digest = headerValue(res.headers, 'docker-content-digest');
    if (digest) head.digest = digest;
    const type = headerValue(res.headers, 'content-type');
    if (type) head.mediaType = type.split(';')[0]!.trim();
    const len = headerValue(res.headers, 'content-length');
    if (len !== undefined) head.size = Number(len);
    return head;
  }

  /** Stores a manifest under a tag or digest; returns the digest the registry computed. */
  async putManifest(ref: string, bytes: Buffer, mediaType: string): Promise<Digest> {
    const res = await this.call({
      method: 'PUT',
      url: this.path('manifests', ref),
      headers: { 'content-type': mediaType },
      body: bytes,
    });
    if (res.status !== 201 && res.status !== 200 && res.status !== 202) {
      throw await this.responseError(res, `pushing manifest ${ref}`);
    }
    await res.dump();
    return headerValue(res.headers, 'docker-content-digest') ?? sha256(bytes);
  }

  async close(): Promise<void> {
    await this.transport.close();
  }
}

function describe(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
