/**
 * A small Docker token server (the "auth.token" realm of distribution), for
 * testing the client's bearer-token flows against the real registry:
 *   GET  /token?service=S&scope=repository:NAME:pull,push[&scope=...][&offline_token=true]
 *        optional Basic auth; 401 on a wrong password or unknown user.
 *   POST /token  (application/x-www-form-urlencoded, OAuth2)
 *        grant_type=password (username, password[, access_type=offline → refresh_token])
 *        grant_type=refresh_token (refresh_token previously issued by this server)
 *        scope is space separated, as in OAuth2.
 * Tokens are ES256 JWTs with the signing certificate in `x5c`, which the
 * registry verifies against its `rootcertbundle`.
 *
 * The registry accepts a token up to 60 s past its `exp` (distribution's
 * leeway), so a short `lifetime` tests when the client *asks* for a new token,
 * not whether the registry rejects an old one; to force a 401 from the
 * registry side, inject one with the fault proxy.
 */
import { randomBytes, sign } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import type { SigningCert } from './certs.js';
import { listenOnLoopback } from './ports.js';

/** Returns the actions granted to `user` (undefined = anonymous) for `scope` ("type:name:actions"). */
export type TokenAccessFn = (user: string | undefined, scope: string) => string[];

export interface TokenServerOptions {
  service: string;
  issuer: string;
  signing: SigningCert;
  users: Record<string, string>;
  access?: TokenAccessFn;
  /** Seconds; reported as expires_in and used for exp. Default 300. */
  lifetime?: number;
  /** Serve HTTPS with this certificate (the test registry's, when it runs TLS). */
  tls?: { certPem: string; keyPem: string };
}

export interface TokenRequestRecord {
  method: string;
  /** 'password' | 'refresh_token' for POST, undefined for GET. */
  grantType?: string;
  /** The authenticated user, undefined when anonymous or refused. */
  user?: string;
  scopes: string[];
  status: number;
  /** Whether the request carried an Authorization header (its value is never kept). */
  hadAuthorization: boolean;
}

export interface TokenServer {
  /** e.g. "http://127.0.0.1:PORT/token" — the realm in the registry's challenge. */
  realm: string;
  url: string;
  service: string;
  issuer: string;
  /** Token lifetime in seconds for tokens issued from now on. */
  lifetime: number;
  /** When a number, every request is answered with that status (e.g. 401, 503). */
  refuse: number | false;
  /** Every request received, in order (no secrets). */
  readonly requests: TokenRequestRecord[];
  /** Number of requests received (GET and POST). */
  readonly count: number;
  /** Refresh tokens handed out so far (identity tokens), newest last. */
  readonly refreshTokens: string[];
  stop(): Promise<void>;
}

interface AccessEntry { type: string; name: string; actions: string[] }

function b64url(data: Buffer | string): string {
  return Buffer.from(data).toString('base64url');
}

/** Splits "repository:host:5000/name:pull,push" into type, name and actions. */
export function parseScope(scope: string): AccessEntry | undefined {
  const first = scope.indexOf(':');
  const last = scope.lastIndexOf(':');
  if (first <= 0 || last === first) return undefined;
  return {
    type: scope.slice(0, first),
    name: scope.slice(first + 1, last),
    actions: scope.slice(last + 1).split(',').filter((a) => a !== ''),
  };
}

export async function startTokenServer(opts: TokenServerOptions): Promise<TokenServer> {
  const refreshOwners = new Map<string, string>();
  const requests: TokenRequestRecord[] = [];
  const refreshTokens: string[] = [];
  const access: TokenAccessFn = opts.access ?? ((user, scope) => {
    const anyoneAllowed = Object.keys(opts.users).length === 0;
    return user !== undefined || anyoneAllowed ? (parseScope(scope)?.actions ?? []) : [];
  });

  const state = {
    lifetime: opts.lifetime ?? 300,
    refuse: false as number | false,
  };

  const makeToken = (user: string | undefined, scopes: string[]) => {
    const now = Math.floor(Date.now() / 1000);
    const entries: AccessEntry[] = [];
    for (const scope of scopes) {
      const parsed = parseScope(scope);
      if (!parsed) continue;
      const granted = access(user, scope);
      const actions = parsed.actions.filter((a) => granted.includes(a) || granted.includes('*'));
      if (actions.length > 0) entries.push({ type: parsed.type, name: parsed.name, actions });
    }
    const header = { typ: 'JWT', alg: 'ES256', x5c: [opts.signing.x5c] };
    const claims = {
      iss: opts.issuer,
      sub: user ?? '',
      aud: opts.service,
      exp: now + state.lifetime,
      nbf: now - 1,
      iat: now,
      jti: randomBytes(12).toString('hex'),
      access: entries,
    };
    const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
    const signature = sign('sha256', Buffer.from(input), { key: opts.signing.keyPem, dsaEncoding: 'ieee-p1363' });
    return {
      token: `${input}.${b64url(signature)}`,
      expires_in: state.lifetime,
      issued_at: new Date(now * 1000).toISOString(),
      scope: entries.map((e) => `${e.type}:${e.name}:${e.actions.join(',')}`).join(' '),
    };
  };

  const issueRefreshToken = (user: string): string => {
    const token = randomBytes(24).toString('hex');
    refreshOwners.set(token, user);
    refreshTokens.push(token);
    return token;
  };

  const checkPassword = (user: string | undefined, password: string | undefined): boolean =>
    user !== undefined && Object.prototype.hasOwnProperty.call(opts.users, user) && opts.users[user] === password;

  const handler = (req: http.IncomingMessage, res: http.ServerResponse, body: string): void => {
    const url = new URL(req.url ?? '/', 'http://token.invalid');
    const record: TokenRequestRecord = {
      method: req.method ?? '', scopes: [], status: 0, hadAuthorization: req.headers.authorization !== undefined,
    };
    requests.push(record);
    const reply = (status: number, json: unknown, headers: Record<string, string> = {}) => {
      record.status = status;
      res.writeHead(status, { 'content-type': 'application/json', ...headers });
      res.end(JSON.stringify(json));
    };
    const unauthorized = (detail: string) =>
      reply(401, { errors: [{ code: 'UNAUTHORIZED', message: detail }] },
        { 'www-authenticate': 'Basic realm="tarpush-test-token"' });

    if (url.pathname !== '/token') { reply(404, { errors: [{ code: 'NOT_FOUND', message: 'no such endpoint' }] }); return; }
    if (state.refuse !== false) { reply(state.refuse, { errors: [{ code: 'DENIED', message: 'token server refuses everything' }] }); return; }

    if (req.method === 'GET') {
      record.scopes = url.searchParams.getAll('scope').flatMap((s) => s.split(' ')).filter((s) => s !== '');
      const service = url.searchParams.get('service');
      if (service !== null && service !== opts.service) { reply(400, { errors: [{ code: 'INVALID_SERVICE', message: `unknown service ${service}` }] }); return; }
      let user: string | undefined;
      const authz = req.headers.authorization;
      if (authz !== undefined) {
        const m = /^Basic\s+(\S+)$/i.exec(authz);
        if (!m) { unauthorized('only Basic credentials are accepted on GET'); return; }
        const decoded = Buffer.from(m[1]!, 'base64').toString('utf8');
        const colon = decoded.indexOf(':');
        const name = colon < 0 ? decoded : decoded.slice(0, colon);
        const password = colon < 0 ? '' : decoded.slice(colon + 1);
        if (!checkPassword(name, password)) { unauthorized('invalid username or password'); return; }
        user = name;
      }
      if (user !== undefined) record.user = user;
      const t = makeToken(user, record.scopes);
      const out: Record<string, unknown> = { token: t.token, access_token: t.token, expires_in: t.expires_in, issued_at: t.issued_at };
      if (user !== undefined && url.searchParams.get('offline_token') === 'true') out.refresh_token = issueRefreshToken(user);
      reply(200, out);
      return;
    }

    if (req.method === 'POST') {
      const form = new URLSearchParams(body);
      const grantType = form.get('grant_type') ?? '';
      record.grantType = grantType;
      record.scopes = (form.get('scope') ?? '').split(' ').filter((s) => s !== '');
      const service = form.get('service');
      if (service !== null && service !== opts.service) { reply(400, { error: 'invalid_request', error_description: `unknown service ${service}` }); return; }
      let user: string;
      let refreshToken: string | undefined;
      if (grantType === 'password') {
        const name = form.get('username') ?? undefined;
        if (!checkPassword(name, form.get('password') ?? undefined)) {
          reply(401, { error: 'invalid_grant', error_description: 'invalid username or password' });
          return;
        }
        user = name!;
        if (form.get('access_type') === 'offline') refreshToken = issueRefreshToken(user);
      } else if (grantType === 'refresh_token') {
        const presented = form.get('refresh_token') ?? '';
        const owner = refreshOwners.get(presented);
        if (owner === undefined) { reply(401, { error: 'invalid_grant', error_description: 'unknown refresh token' }); return; }
        user = owner;
        refreshToken = presented;
      } else {
        reply(400, { error: 'unsupported_grant_type', error_description: `grant_type ${grantType || '(none)'}` });
        return;
      }
      record.user = user;
      const t = makeToken(user, record.scopes);
      const out: Record<string, unknown> = { access_token: t.token, scope: t.scope, expires_in: t.expires_in, issued_at: t.issued_at };
      if (refreshToken !== undefined) out.refresh_token = refreshToken;
      reply(200, out);
      return;
    }

    reply(405, { errors: [{ code: 'UNSUPPORTED', message: `method ${req.method}` }] });
  };

  const onRequest = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => handler(req, res, Buffer.concat(chunks).toString('utf8')));
  };
  const server = opts.tls
    ? https.createServer({ cert: opts.tls.certPem, key: opts.tls.keyPem }, onRequest)
    : http.createServer(onRequest);
  const port = await listenOnLoopback(server);
  const url = `${opts.tls ? 'https' : 'http'}://127.0.0.1:${port}`;

  let stopped: Promise<void> | undefined;
  return {
    realm: `${url}/token`,
    url,
    service: opts.service,
    issuer: opts.issuer,
    get lifetime() { return state.lifetime; },
    set lifetime(v: number) { state.lifetime = v; },
    get refuse() { return state.refuse; },
    set refuse(v: number | false) { state.refuse = v; },
    requests,
    get count() { return requests.length; },
    refreshTokens,
    stop() {
      stopped ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return stopped;
    },
  };
}

/**
 * The WWW-Authenticate value the registry sends for `scope`; with the fault
 * proxy's status action it simulates a token the registry stopped accepting:
 *   proxy.addRule({ times: 1, action: { kind: 'status', status: 401,
 *     headers: { 'www-authenticate': bearerChallenge(reg.tokenServer!, scope, 'invalid_token') } } })
 */
export function bearerChallenge(server: Pick<TokenServer, 'realm' | 'service'>, scope?: string, error?: string): string {
  let value = `Bearer realm="${server.realm}",service="${server.service}"`;
  if (scope !== undefined) value += `,scope="${scope}"`;
  if (error !== undefined) value += `,error="${error}"`;
  return value;
}
