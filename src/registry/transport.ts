import { readFileSync } from 'node:fs';
import type { IncomingHttpHeaders } from 'node:http';
import { Readable } from 'node:stream';
import type { Dispatcher, EnvHttpProxyAgent } from 'undici';
import { TarpushError } from '../errors.js';
import { silentReporter, type ProgressReporter } from '../progress/progress.js';
import { redactUrl } from './redact.js';

/**
 * HTTP for one registry host: connection reuse, scheme selection (https, plain http, or the
 * loopback fallback), TLS settings, proxies from the environment, and bounded retries of
 * requests that can be replayed. Authentication lives one level up (auth.ts) and upload resume
 * two levels up (blob-upload.ts), because only they know how to redo their work.
 */
export interface TransportOptions {
  /** Talk plain HTTP to the registry. */
  plainHttp?: boolean;
  /** Do not verify the registry's TLS certificate. */
  insecure?: boolean;
  /** PEM bundle of CAs to trust (in addition to nothing: it replaces the system store, as curl does). */
  caFile?: string;
  /** Client certificate and key for mutual TLS. */
  certFile?: string;
  keyFile?: string;
  reporter?: ProgressReporter;
  userAgent?: string;
  /** Attempts per request including the first (default 5). */
  maxAttempts?: number;
  /** First backoff delay in ms (default 500); doubles per attempt, with jitter. */
  retryBaseMs?: number;
  /** Longest single sleep between attempts in ms, also caps Retry-After (default 30 s). */
  retryMaxMs?: number;
  /** Environment for HTTPS_PROXY/HTTP_PROXY/NO_PROXY (default process.env). */
  env?: NodeJS.ProcessEnv;
  /**
   * Send loopback registries through HTTP(S)_PROXY too. Off by default, as in Go's (and so
   * Docker's and skopeo's) proxy handling: a proxy cannot reach the user's own localhost.
   */
  proxyLoopback?: boolean;
}

export type RequestBody = Buffer | string | Readable;

export interface HttpRequest {
  method: string;
  /** A path on the registry (`/v2/...`) or an absolute URL (upload Locations, token realms). */
  url: string;
  headers?: Record<string, string>;
  body?: RequestBody;
  /**
   * Retry on 408/429/5xx and dropped connections. Defaults to true unless the body is a stream,
   * which cannot be replayed.
   */
  retry?: boolean;
}

export interface HttpResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: Readable;
  /** The absolute URL that answered. */
  url: string;
  /** Reads the whole (small) body as text. */
  text(limit?: number): Promise<string>;
  /** Discards the body so the connection can be reused. */
  dump(): Promise<void>;
}

export const DEFAULT_USER_AGENT = 'tarpush';
const RETRY_STATUSES = new Set([408, 429, 500, 502, 503, 504]);

/** Network error codes after which a request may be safely repeated. */
const RETRYABLE_CODES = new Set([
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'ECONNABORTED',
  'EAI_AGAIN',
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'UND_ERR_RES_CONTENT_LENGTH_MISMATCH',
]);

/** TLS failures meaning "this is not a TLS server", after which a loopback host gets plain HTTP. */
const NOT_TLS_CODES = new Set([
  'ERR_SSL_WRONG_VERSION_NUMBER',
  'ERR_SSL_PACKET_LENGTH_TOO_LONG',
  'ERR_SSL_HTTP_REQUEST',
  'ERR_SSL_UNKNOWN_PROTOCOL',
]);

/** Whether a failure says the other side does not speak TLS at all (not a TLS alert). */
function isNotTls(e: unknown): boolean {
  if (errorCodes(e).some((c) => NOT_TLS_CODES.has(c))) return true;
  // Older OpenSSL builds report these as a bare EPROTO.
  return errorCodes(e).includes('EPROTO') && /wrong version number|packet length too long|http request/i.test((e as Error).message ?? '');
}

/** Certificate verification failures: fixed by --ca-file or --insecure. */
const CERT_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_UNTRUSTED',
  'CERT_SIGNATURE_FAILURE',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'HOSTNAME_MISMATCH',
]);

/** The error codes along an error's cause chain (undici wraps socket errors). */
export function errorCodes(e: unknown): string[] {
  const codes: string[] = [];
  let cur: unknown = e;
  for (let depth = 0; cur && depth < 6; depth++) {
    const c = (cur as { code?: unknown }).code;
    if (typeof c === 'string') codes.push(c);
    cur = (cur as { cause?: unknown }).cause;
  }
  return codes;
}

export function isRetryableNetworkError(e: unknown): boolean {
  if (e instanceof TarpushError) return e.kind === 'network' && (e as { retryable?: boolean }).retryable === true;
  const codes = errorCodes(e);
  if (codes.some((c) => RETRYABLE_CODES.has(c))) return true;
  const msg = (e as Error | undefined)?.message ?? '';
  return /socket hang up|other side closed|socket closed|terminated/i.test(msg);
}

/** Whether a host is loopback, where Docker (and tarpush) accept plain HTTP without being told. */
export function isLoopbackHost(host: string): boolean {
  const name = hostname(host);
  return name === 'localhost' || name === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(name);
}

/** `host:port` or `[v6]:port` → the bare host name. */
function hostname(host: string): string {
  const v6 = /^\[([^\]]+)\]/.exec(host);
  if (v6) return v6[1]!.toLowerCase();
  return host.replace(/:\d+$/, '').toLowerCase();
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Retry-After as seconds or an HTTP date, in ms; undefined when absent or unparseable. */
export function parseRetryAfter(value: string | string[] | undefined, now = Date.now()): number | undefined {
  const v = Array.isArray(value) ? value[0] : value;
  if (v === undefined || v.trim() === '') return undefined;
  if (/^\d+$/.test(v.trim())) return Number(v.trim()) * 1000;
  const date = Date.parse(v);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, date - now);
}

export function headerValue(headers: IncomingHttpHeaders, name: string): string | undefined {
  const v = headers[name.toLowerCase()];
  return Array.isArray(v) ? v[0] : v;
}

function readFileOrFail(file: string, what: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    throw new TarpushError('usage', `${file}: cannot read ${what} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
}

function hasProxyEnv(env: NodeJS.ProcessEnv): boolean {
  return Boolean(env.HTTPS_PROXY || env.https_proxy || env.HTTP_PROXY || env.http_proxy);
}

export class Transport {
  /** The registry's API host (`registry-1.docker.io`, `127.0.0.1:5000`). */
  readonly host: string;
  /** Made on first use: undici costs ~20 MiB and 20 ms to load, which offline commands skip. */
  private dispatcher?: Promise<Dispatcher>;
  private readonly makeDispatcher: () => Promise<Dispatcher>;
  private readonly reporter: ProgressReporter;
  private readonly userAgent: string;
  private readonly maxAttempts: number;
  private readonly retryBaseMs: number;
  private readonly retryMaxMs: number;
  private scheme: 'https' | 'http';
  /** Whether a failed TLS handshake may still switch this host to plain HTTP. */
  private mayFallBack: boolean;

  constructor(host: string, opts: TransportOptions = {}) {
    this.host = host;
    this.reporter = opts.reporter ?? silentReporter;
    this.userAgent = opts.userAgent ?? DEFAULT_USER_AGENT;
    this.maxAttempts = Math.max(1, opts.maxAttempts ?? 5);
    this.retryBaseMs = opts.retryBaseMs ?? 500;
    this.retryMaxMs = opts.retryMaxMs ?? 30_000;
    this.scheme = opts.plainHttp ? 'http' : 'https';
    this.mayFallBack = !opts.plainHttp && isLoopbackHost(host);

    const tls: Record<string, unknown> = {};
    if (opts.insecure) tls.rejectUnauthorized = false;
    if (opts.caFile) tls.ca = readFileOrFail(opts.caFile, 'CA file');
    if (opts.certFile || opts.keyFile) {
      if (!opts.certFile || !opts.keyFile) throw new TarpushError('usage', 'a client certificate needs both --cert and --key');
      tls.cert = readFileOrFail(opts.certFile, 'client certificate');
      tls.key = readFileOrFail(opts.keyFile, 'client key');
    }
    const common = { keepAliveTimeout: 30_000, connect: { ...tls, timeout: 30_000 } };
    const env = opts.env ?? process.env;
    const useProxy = hasProxyEnv(env) && (opts.proxyLoopback || !isLoopbackHost(host));
    this.makeDispatcher = async () => {
      const undici = await import('undici');
      return useProxy
        ? new undici.EnvHttpProxyAgent({
            ...common,
            // ProxyAgent takes the registry's TLS settings as requestTls, not connect.
            requestTls: tls,
            httpProxy: env.HTTP_PROXY ?? env.http_proxy,
            httpsProxy: env.HTTPS_PROXY ?? env.https_proxy ?? env.HTTP_PROXY ?? env.http_proxy,
            noProxy: env.NO_PROXY ?? env.no_proxy ?? '',
          } as ConstructorParameters<typeof EnvHttpProxyAgent>[0])
        : new undici.Agent(common);
    };
  }

  /** `https://host` or `http://host`, as currently decided for this registry. */
  get baseUrl(): string {
    return `${this.scheme}://${this.host}`;
  }

  resolve(url: string): URL {
    return new URL(url, this.baseUrl);
  }

  debug(message: string): void {
    this.reporter.debug(message);
  }

  /**
   * Sends a request, retrying replayable ones on 408/429/5xx and dropped connections with
   * exponential backoff and jitter (honouring Retry-After). Returns whatever status the last
   * attempt got; only network failures throw (as TarpushError kind 'network').
   */
  async send(req: HttpRequest): Promise<HttpResponse> {
    const replayable = !(req.body instanceof Readable);
    const retry = req.retry ?? replayable;
    for (let attempt = 1; ; attempt++) {
      const url = this.resolve(req.url);
      const onRegistry = url.host === this.host;
      let res: HttpResponse;
      try {
        res = await this.once(req, url);
      } catch (e) {
        if (onRegistry && this.mayFallBack && url.protocol === 'https:' && isNotTls(e)) {
          // Like Docker with loopback registries: no TLS there, so speak HTTP for the rest of the run.
          this.scheme = 'http';
          this.mayFallBack = false;
          this.debug(`${this.host} does not speak TLS; using plain HTTP for this registry`);
          if (replayable) {
            attempt--;
            continue;
          }
        }
        if (onRegistry && url.protocol === 'https:') this.mayFallBack = false;
        const retryable = isRetryableNetworkError(e);
        if (retry && retryable && attempt < this.maxAttempts) {
          const delay = this.backoff(attempt);
          this.debug(`${req.method} ${redactUrl(url.href)} failed (${describeNetworkError(e)}); retry ${attempt}/${this.maxAttempts - 1} in ${delay} ms`);
          await sleep(delay);
          continue;
        }
        throw this.networkError(e, url, attempt);
      }
      if (onRegistry && url.protocol === 'https:') this.mayFallBack = false;
      this.debug(`${req.method} ${redactUrl(url.href)} → ${res.status}`);
      if (retry && RETRY_STATUSES.has(res.status) && attempt < this.maxAttempts) {
        const retryAfter = parseRetryAfter(res.headers['retry-after']);
        const delay = Math.min(this.retryMaxMs, retryAfter ?? this.backoff(attempt));
        await res.dump();
        this.debug(`${req.method} ${redactUrl(url.href)} got ${res.status}; retry ${attempt}/${this.maxAttempts - 1} in ${delay} ms`);
        await sleep(delay);
        continue;
      }
      return res;
    }
  }

  private backoff(attempt: number): number {
    const exp = Math.min(this.retryMaxMs, this.retryBaseMs * 2 ** (attempt - 1));
    // Jitter keeps parallel uploads from retrying in lockstep.
    return Math.round(exp / 2 + Math.random() * (exp / 2));
  }

  private async once(req: HttpRequest, url: URL): Promise<HttpResponse> {
    const headers: Record<string, string> = { 'user-agent': this.userAgent, ...req.headers };
    const body = typeof req.body === 'string' ? Buffer.from(req.body) : req.body;
    if (Buffer.isBuffer(body) && headers['content-length'] === undefined) headers['content-length'] = String(body.length);
    this.dispatcher ??= this.makeDispatcher();
    const r = await (await this.dispatcher).request({
      origin: url.origin,
      path: `${url.pathname}${url.search}`,
      method: req.method as Dispatcher.HttpMethod,
      headers,
      body: body ?? null,
    });
    const stream = r.body;
    return {
      status: r.statusCode,
      headers: r.headers,
      body: stream,
      url: url.href,
      async text(limit = 1024 * 1024) {
        let out = '';
        for await (const chunk of stream) {
          out += (chunk as Buffer).toString('utf8');
          if (out.length > limit) {
            stream.destroy();
            break;
          }
        }
        return out;
      },
      async dump() {
        try {
          await stream.dump({ limit: 256 * 1024 });
        } catch {
          // A body we do not want: failing to drain it only costs the connection.
        }
      },
    };
  }

  networkError(e: unknown, url: URL, attempts = 1): TarpushError {
    if (e instanceof TarpushError) return e;
    const where = url.host === this.host ? this.host : url.host;
    const codes = errorCodes(e);
    const tries = attempts > 1 ? ` after ${attempts} attempts` : '';
    if (codes.includes('ECONNREFUSED')) return new TarpushError('network', `cannot reach ${where} (connection refused)`, { cause: e });
    if (codes.includes('ENOTFOUND')) return new TarpushError('network', `cannot reach ${where} (host not found)`, { cause: e });
    const cert = codes.find((c) => CERT_CODES.has(c));
    if (cert) {
      return new TarpushError(
        'network',
        `cannot verify the TLS certificate of ${where} (${cert}); trust its CA with --ca-file, or skip verification with --insecure`,
        { cause: e },
      );
    }
    if (isNotTls(e)) {
      return new TarpushError('network', `TLS handshake with ${where} failed (${describeNetworkError(e)}); if it serves plain HTTP, use --plain-http`, { cause: e });
    }
    const err = new TarpushError('network', `connection to ${where} failed${tries} (${describeNetworkError(e)})`, { cause: e });
    if (isRetryableNetworkError(e)) (err as { retryable?: boolean }).retryable = true;
    return err;
  }

  async close(): Promise<void> {
    if (this.dispatcher) await (await this.dispatcher).close();
  }
}

export function describeNetworkError(e: unknown): string {
  const codes = errorCodes(e);
  let msg = (e as Error | undefined)?.message ?? String(e);
  // OpenSSL's "805C…:error:0A00010B:SSL routines:ssl3_get_record:wrong version number:file:line": keep the reason.
  const ssl = /SSL routines:[^:]*:([^:]+)/.exec(msg);
  if (ssl) return ssl[1]!.trim();
  const code = codes[codes.length - 1] ?? codes[0];
  return code && !msg.includes(code) ? `${code}: ${msg}` : msg;
}
