import { Readable } from 'node:stream';
import { TarpushError } from '../errors.js';
import { MAX_DOCUMENT_BYTES } from '../image/content.js';
import type { Descriptor } from '../image/descriptor.js';
import { sha256, type Digest } from '../image/digest.js';
import { MediaType } from '../image/mediatypes.js';
import type { Progress } from '../progress/progress.js';
import { pullScope, pushScope, type Authenticator } from './auth.js';
import * as download from './blob-download.js';
import * as upload from './blob-upload.js';
import type { UploadSession } from './blob-upload.js';
import { findChallenge, parseChallenges } from './challenge.js';
import { redactUrl, scrub } from './redact.js';
import { AuthReplayNeeded, MAX_TRANSFER_FAILURES, describe, sleep } from './retry-rules.js';
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


/** Operations on one repository of one registry. */
export class RegistryClient {
  readonly registry: string;
  readonly repository: string;
  /** `registry/repository`, for messages. */
  readonly where: string;
  readonly transport: Transport;
  readonly auth: Authenticator;
  chunkSize: number;
  /** Where uploads are recorded for resuming in a later run (blob-upload.ts). */
  readonly state?: UploadStateStore;
  private readonly scopes: string[];
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

  path(kind: 'blobs' | 'manifests', ref: string): string {
    return `/v2/${this.repository}/${kind}/${ref}`;
  }

  /** Delay before retrying a broken transfer (download, upload, manifest read). */
  backoff(failures: number): number {
    const exp = Math.min(30_000, this.retryBaseMs * 2 ** (failures - 1));
    return Math.round(exp / 2 + Math.random() * (exp / 2));
  }

  /**
   * GET /v2/: decides http vs https for loopback hosts and learns the auth scheme before any
   * request with a body is sent (a body stream cannot be replayed after a 401).
   */
  ping(): Promise<void> {
    this.pinged ??= (async () => {
      const res = await this.transport.send({ method: 'GET', url: '/v2/' });
      if (res.status === 401) {
        await this.auth.challenged(res.headers, [], undefined);
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
      const retry = round < 2 && (await this.auth.challenged(res.headers, scopes, authz));
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

  /**
   * The blob's raw bytes as one stream. A download that breaks is resumed with a Range request
   * from the byte it stopped at, so callers never see the break.
   */
  openBlob(desc: Pick<Descriptor, 'digest' | 'size'>, opts: { offset?: number } = {}): Promise<Readable> {
    return download.openBlob(this, desc, opts);
  }

  /**
   * Asks the registry to mount `digest` from another repository of the same registry. Returns
   * `mounted`, or the upload session the registry opened instead (202) for the caller to use.
   */
  mountBlob(digest: Digest, fromRepository: string): Promise<{ mounted: true } | { mounted: false; session: UploadSession }> {
    return upload.mountBlob(this, digest, fromRepository);
  }

  /** Opens an upload session. */
  startUpload(): Promise<UploadSession> {
    return upload.startUpload(this);
  }

  /** Where an upload stands, or undefined when the registry no longer knows it. */
  uploadStatus(location: string): Promise<UploadSession | undefined> {
    return upload.uploadStatus(this, location);
  }

  cancelUpload(location: string): Promise<void> {
    return upload.cancelUpload(this, location);
  }

  /**
   * Uploads a blob from `open()` (a verified stream). Small blobs go in one PUT; larger ones
   * stream in chunks (memory does not grow with chunk or blob size), each confirmed chunk
   * recorded so a later run can resume, and are committed by an empty PUT only once the source
   * has ended verified. Within a run, failures are recovered by asking the registry for the
   * upload's status and reopening the source at the offset it reports.
   */
  uploadBlob(
    desc: Pick<Descriptor, 'digest' | 'size'>,
    open: () => Promise<Readable>,
    progress?: Progress,
    opts: { mountFrom?: string[] } = {},
  ): Promise<UploadResult> {
    return upload.uploadBlob(this, desc, open, progress, opts);
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
