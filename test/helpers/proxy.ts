/**
 * A fault-injecting HTTP proxy in front of a test registry. It forwards every
 * request and response as a stream, in both directions, over keep-alive
 * connections, and applies programmable faults (status codes, connection
 * resets after N body bytes, delays, a flipped response byte). It counts
 * requests and body bytes so tests can assert, e.g., that a resumed push sent
 * far fewer PATCH/PUT bytes than the first attempt.
 *
 * The client side is always plain HTTP. For a TLS registry the proxy speaks
 * HTTPS upstream (trusting the registry's CA), so clients talk to `proxy.url`
 * ("http://127.0.0.1:PORT") without any TLS settings.
 *
 * The Host header sent upstream is the registry's own, so the absolute
 * `Location` URLs the registry builds point at it; the proxy rewrites them to
 * point back at itself, keeping the client on the proxy for the whole upload.
 */
import http from 'node:http';
import https from 'node:https';
import type { Socket } from 'node:net';
import { Transform, pipeline, type TransformCallback } from 'node:stream';
import { listenOnLoopback } from './ports.js';

export type FaultAction =
  /** Answer with this status (and optional Retry-After seconds) without contacting the registry. */
  | { kind: 'status'; status: number; retryAfter?: number; headers?: Record<string, string>; body?: string }
  /** Forward `bytes` bytes of the request or response body, then reset the client's connection. */
  | { kind: 'reset-after'; bytes: number; direction: 'request' | 'response' }
  /** Wait `ms`, then forward normally. */
  | { kind: 'delay'; ms: number }
  /** Forward the response with one body byte (at `offset`, default 0) XORed with 0xff. */
  | { kind: 'corrupt-response'; offset?: number }
  /** Forward normally; with `times`, lets the first N matching requests through before later rules. */
  | { kind: 'pass' }
  /** Forward, adding these headers to the registry's response (e.g. OCI-Chunk-Min-Length). */
  | { kind: 'add-headers'; headers: Record<string, string> }
  /**
   * Keep the request (body unread, nothing forwarded, no answer) until the
   * client goes away or `releaseHeld()`. Kill a client while the proxy holds
   * its request and the registry has seen only whole, acknowledged requests.
   */
  | { kind: 'hold' };

export interface FaultRule {
  /** HTTP method to match (case-insensitive); any when absent. */
  method?: string;
  /** Tested against the request target (path and query); any when absent. */
  path?: RegExp;
  /** How many requests the rule applies to; unlimited when absent. */
  times?: number;
  action: FaultAction;
}

export interface ActiveRule {
  readonly rule: FaultRule;
  /** Requests this rule has been applied to. */
  readonly hits: number;
  remove(): void;
}

export interface ProxyRecord {
  method: string;
  /** Request target as the client sent it (path and query). */
  path: string;
  /** Status sent to the client (undefined if the connection was reset before it). */
  status?: number;
  /** Request body bytes received from the client. */
  requestBytes: number;
  /** Response body bytes sent to the client. */
  responseBytes: number;
  /** The fault applied, if any. */
  fault?: FaultAction['kind'];
}

export interface ProxyFilter {
  method?: string | string[];
  path?: RegExp;
}

export interface ProxyStats {
  requests: number;
  requestBytes: number;
  responseBytes: number;
}

export interface FaultProxy {
  /** "http://127.0.0.1:PORT" */
  url: string;
  /** "127.0.0.1:PORT" — for image references through the proxy. */
  host: string;
  addRule(rule: FaultRule): ActiveRule;
  clearRules(): void;
  /** Every request seen, in arrival order. */
  readonly log: ProxyRecord[];
  /** Totals over the requests matching `filter` (all when absent). */
  stats(filter?: ProxyFilter): ProxyStats;
  /** Forgets the log (counters restart from zero). */
  resetCounters(): void;
  /**
   * Resolves with the first request (already seen or still to come) matching
   * `filter` — and `fault`, when given — e.g. `waitFor({ method: 'PATCH', fault: 'hold' })`.
   */
  waitFor(filter: ProxyFilter & { fault?: FaultAction['kind'] }, timeoutMs?: number): Promise<ProxyRecord>;
  /** Forwards the requests held by a `hold` rule (those whose client is still there). */
  releaseHeld(): void;
  stop(): Promise<void>;
}

export interface ProxyUpstream {
  /** e.g. "http://127.0.0.1:5000" or "https://127.0.0.1:5443" */
  url: string;
  /** CA to trust for an HTTPS upstream. */
  caPem?: string;
}

const HOP_BY_HOP = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization',
  'te', 'trailer', 'transfer-encoding', 'upgrade',
]);

function forwardable(headers: http.IncomingHttpHeaders): http.OutgoingHttpHeaders {
  const out: http.OutgoingHttpHeaders = {};
  for (const [k, v] of Object.entries(headers)) if (v !== undefined && !HOP_BY_HOP.has(k)) out[k] = v;
  return out;
}

function matches(filter: ProxyFilter | undefined, r: ProxyRecord): boolean {
  if (!filter) return true;
  if (filter.method !== undefined) {
    const methods = [filter.method].flat().map((m) => m.toUpperCase());
    if (!methods.includes(r.method)) return false;
  }
  return filter.path === undefined || filter.path.test(r.path);
}

/** Hard-closes the client's connection with a TCP RST, as a network failure would. */
function resetSocket(socket: Socket): void {
  if (typeof socket.resetAndDestroy === 'function' && !socket.destroyed) socket.resetAndDestroy();
  else socket.destroy();
}

/**
 * Counts body bytes and optionally cuts the stream after `limit.bytes` bytes
 * (calling `onLimit` once those went through) or flips the byte at `flipAt`.
 * `countDropped`: also count bytes that arrive after the cut (request side:
 * "bytes received from the client"); otherwise only bytes passed on.
 */
class Tap extends Transform {
  private seen = 0;
  private cut = false;
  constructor(
    private readonly onBytes: (n: number) => void,
    private readonly opts: { limit?: { bytes: number; onLimit: () => void }; flipAt?: number; countDropped?: boolean } = {},
  ) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    const { limit, flipAt, countDropped } = this.opts;
    if (this.cut) {
      if (countDropped) this.onBytes(chunk.length);
      done();
      return;
    }
    let out = chunk;
    if (limit && this.seen + out.length >= limit.bytes) {
      out = out.subarray(0, limit.bytes - this.seen);
      this.cut = true;
      this.onBytes(countDropped ? chunk.length : out.length);
      this.seen += out.length;
      if (out.length > 0) this.push(out);
      // Let the allowed bytes reach the other side before cutting the line.
      setTimeout(limit.onLimit, 20);
      done();
      return;
    }
    if (flipAt !== undefined && flipAt >= this.seen && flipAt < this.seen + out.length) {
      out = Buffer.from(out);
      out[flipAt - this.seen]! ^= 0xff;
    }
    this.seen += out.length;
    this.onBytes(out.length);
    done(null, out);
  }
}

export async function startProxy(upstream: ProxyUpstream): Promise<FaultProxy> {
  const target = new URL(upstream.url);
  const isHttps = target.protocol === 'https:';
  const agent = isHttps
    ? new https.Agent({ keepAlive: true, ...(upstream.caPem ? { ca: upstream.caPem } : {}) })
    : new http.Agent({ keepAlive: true });
  const upstreamOrigins = [target.origin, `${target.protocol}//localhost:${target.port}`];
  const rules: { rule: FaultRule; hits: number; removed: boolean }[] = [];
  let log: ProxyRecord[] = [];
  let proxyUrl = '';
  const held = new Set<{ release: () => void }>();
  type Waiter = { test: (r: ProxyRecord) => boolean; resolve: (r: ProxyRecord) => void };
  const waiters = new Set<Waiter>();
  const notify = (record: ProxyRecord) => {
    for (const w of waiters) if (w.test(record)) { waiters.delete(w); w.resolve(record); }
  };

  const rewriteLocation = (location: string): string => {
    for (const origin of upstreamOrigins) {
      if (location === origin || location.startsWith(`${origin}/`)) return proxyUrl + location.slice(origin.length);
    }
    return location;
  };

  const pickRule = (method: string, path: string) => {
    for (const entry of rules) {
      const { rule } = entry;
      if (entry.removed || (rule.times !== undefined && entry.hits >= rule.times)) continue;
      if (rule.method !== undefined && rule.method.toUpperCase() !== method) continue;
      if (rule.path !== undefined && !rule.path.test(path)) continue;
      entry.hits++;
      return rule.action;
    }
    return undefined;
  };

  const forward = (req: http.IncomingMessage, res: http.ServerResponse, record: ProxyRecord, action: FaultAction | undefined) => {
    const headers = forwardable(req.headers);
    headers.host = target.host;
    const upReq = (isHttps ? https : http).request({
      host: target.hostname, port: target.port, method: req.method, path: req.url, headers, agent,
    });
    const clientSocket = req.socket;

    upReq.on('response', (upRes) => {
      const outHeaders = forwardable(upRes.headers);
      if (typeof outHeaders.location === 'string') outHeaders.location = rewriteLocation(outHeaders.location);
      if (action?.kind === 'add-headers') Object.assign(outHeaders, action.headers);
      record.status = upRes.statusCode ?? 502;
      res.writeHead(record.status, outHeaders);
      let tap: Tap;
      const count = (n: number) => { record.responseBytes += n; };
      if (action?.kind === 'reset-after' && action.direction === 'response') {
        res.flushHeaders();
        tap = new Tap(count, {
          limit: { bytes: action.bytes, onLimit: () => { resetSocket(clientSocket); upRes.destroy(); } },
        });
      } else if (action?.kind === 'corrupt-response') {
        tap = new Tap(count, { flipAt: action.offset ?? 0 });
      } else {
        tap = new Tap(count);
      }
      pipeline(upRes, tap, res, () => { /* failures surface to the client as a cut connection */ });
    });
    upReq.on('error', () => {
      if (clientSocket.destroyed) return; // cut by a reset-after fault: nothing to answer
      if (!res.headersSent) {
        record.status = 502;
        res.writeHead(502, { 'content-type': 'text/plain' });
        res.end('fault proxy: upstream request failed\n');
      } else {
        res.destroy();
      }
    });

    const countReq = (n: number) => { record.requestBytes += n; };
    let reqTap: Tap;
    if (action?.kind === 'reset-after' && action.direction === 'request') {
      reqTap = new Tap(countReq, {
        limit: { bytes: action.bytes, onLimit: () => { resetSocket(clientSocket); upReq.destroy(); } },
        countDropped: true,
      });
      if (action.bytes === 0) {
        // Nothing of the body may pass: cut before anything is forwarded.
        req.on('data', (c: Buffer) => countReq(c.length));
        setImmediate(() => { resetSocket(clientSocket); upReq.destroy(); });
        return;
      }
    } else {
      reqTap = new Tap(countReq);
    }
    pipeline(req, reqTap, upReq, () => { /* an aborted client or upstream ends both sides */ });
    res.on('close', () => { if (!res.writableFinished) upReq.destroy(); });
  };

  const server = http.createServer((req, res) => {
    const method = (req.method ?? 'GET').toUpperCase();
    const record: ProxyRecord = { method, path: req.url ?? '/', requestBytes: 0, responseBytes: 0 };
    log.push(record);
    const action = pickRule(method, record.path);
    if (action) record.fault = action.kind;
    if (action?.kind !== 'hold') notify(record);

    if (action?.kind === 'status') {
      req.on('data', (c: Buffer) => { record.requestBytes += c.length; });
      req.on('end', () => {
        const headers: Record<string, string> = { 'content-type': 'application/json', ...(action.headers ?? {}) };
        if (action.retryAfter !== undefined) headers['retry-after'] = String(action.retryAfter);
        const body = action.body ?? JSON.stringify({ errors: [{ code: 'UNKNOWN', message: `injected ${action.status}` }] });
        record.status = action.status;
        record.responseBytes = method === 'HEAD' ? 0 : Buffer.byteLength(body);
        res.writeHead(action.status, headers);
        res.end(method === 'HEAD' ? undefined : body);
      });
      return;
    }
    if (action?.kind === 'hold') {
      req.pause();
      const entry = { release: () => { held.delete(entry); req.resume(); forward(req, res, record, undefined); } };
      held.add(entry);
      res.on('close', () => held.delete(entry));
      notify(record);
      return;
    }
    if (action?.kind === 'delay') {
      req.pause();
      const timer = setTimeout(() => { req.resume(); forward(req, res, record, undefined); }, action.ms);
      res.on('close', () => clearTimeout(timer));
      return;
    }
    forward(req, res, record, action);
  });
  server.keepAliveTimeout = 10_000;

  const port = await listenOnLoopback(server);
  proxyUrl = `http://127.0.0.1:${port}`;

  let stopped: Promise<void> | undefined;
  return {
    url: proxyUrl,
    host: `127.0.0.1:${port}`,
    addRule(rule) {
      const entry = { rule, hits: 0, removed: false };
      rules.push(entry);
      return {
        rule,
        get hits() { return entry.hits; },
        remove() { entry.removed = true; },
      };
    },
    clearRules() { for (const r of rules) r.removed = true; rules.length = 0; },
    get log() { return log; },
    stats(filter) {
      const picked = log.filter((r) => matches(filter, r));
      return {
        requests: picked.length,
        requestBytes: picked.reduce((s, r) => s + r.requestBytes, 0),
        responseBytes: picked.reduce((s, r) => s + r.responseBytes, 0),
      };
    },
    resetCounters() { log = []; },
    waitFor(filter, timeoutMs = 30_000) {
      const test = (r: ProxyRecord) => matches(filter, r) && (filter.fault === undefined || r.fault === filter.fault);
      const seen = log.find(test);
      if (seen) return Promise.resolve(seen);
      return new Promise<ProxyRecord>((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.delete(waiter);
          reject(new Error(`fault proxy: no ${filter.method ?? ''} request matching ${filter.path ?? 'any path'} within ${timeoutMs} ms`));
        }, timeoutMs);
        const waiter: Waiter = { test, resolve: (r) => { clearTimeout(timer); resolve(r); } };
        waiters.add(waiter);
      });
    },
    releaseHeld() { for (const h of [...held]) h.release(); },
    stop() {
      stopped ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
        agent.destroy();
      });
      return stopped;
    },
  };
}
