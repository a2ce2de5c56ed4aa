import type { IncomingHttpHeaders } from 'node:http';
import { TarpushError } from '../errors.js';
import { findChallenge, parseChallenges, type Challenge } from './challenge.js';
import type { Credentials } from './credentials.js';
import { redactUrl } from './redact.js';
import type { Transport } from './transport.js';

/**
 * Registry authentication: Basic, or Docker's token protocol (a token per scope from the realm
 * the registry's challenge names, fetched with Basic credentials or an OAuth2 refresh token).
 * Tokens are cached per scope set and refreshed when they expire or the registry refuses them.
 */

const DEFAULT_TOKEN_LIFETIME_S = 60;
const CLIENT_ID = 'tarpush';

interface CachedToken {
  token: string;
  /** ms since epoch after which the token is not used any more */
  expiresAt: number;
}

export class Authenticator {
  private mode: 'unknown' | 'none' | 'basic' | 'bearer' = 'unknown';
  private bearer?: Challenge;
  private readonly tokens = new Map<string, CachedToken>();
  private readonly pending = new Map<string, Promise<CachedToken>>();
  private creds?: Promise<Credentials>;
  /** Secrets met so far, scrubbed from any message as a last line of defence. */
  readonly secrets = new Set<string>();

  constructor(
    private readonly transport: Transport,
    /** The registry name for messages (`docker.io`, `127.0.0.1:5000`). */
    private readonly registry: string,
    private readonly loadCredentials: () => Promise<Credentials>,
    private readonly now: () => number = Date.now,
  ) {}

  credentials(): Promise<Credentials> {
    this.creds ??= this.loadCredentials().then((c) => {
      if (c.kind === 'basic') {
        this.secrets.add(c.password);
        this.secrets.add(Buffer.from(`${c.username}:${c.password}`).toString('base64'));
      }
      if (c.kind === 'identity') this.secrets.add(c.identityToken);
      return c;
    });
    return this.creds;
  }

  /** Whether the registry has told us how it wants to be authenticated. */
  get known(): boolean {
    return this.mode !== 'unknown';
  }

  /** Records that the registry answered without asking for credentials. */
  noAuthNeeded(): void {
    if (this.mode === 'unknown') this.mode = 'none';
  }

  /**
   * The Authorization header for a request needing `scopes`, when the registry's scheme is
   * known. `repo` names the repository for messages.
   */
  async header(scopes: string[], repo: string): Promise<string | undefined> {
    if (this.mode === 'basic') {
      const c = await this.credentials();
      if (c.kind === 'basic') return `Basic ${Buffer.from(`${c.username}:${c.password}`).toString('base64')}`;
      return undefined;
    }
    if (this.mode === 'bearer') {
      const t = await this.token(scopes, repo, false);
      return `Bearer ${t.token}`;
    }
    return undefined;
  }

  /**
   * Handles a 401: learns the scheme from WWW-Authenticate and prepares fresh authorization.
   * Returns false when there is nothing new to try (the caller reports the refusal).
   */
  async challenged(headers: IncomingHttpHeaders, scopes: string[], sentHeader: string | undefined): Promise<boolean> {
    const challenges = parseChallenges(headers['www-authenticate']);
    const bearer = findChallenge(challenges, 'bearer');
    const basic = findChallenge(challenges, 'basic');
    const c = await this.credentials();
    if (bearer && bearer.params.realm) {
      this.mode = 'bearer';
      this.bearer = bearer;
      // First contact (or Basic sent to a token registry): get a token.
      if (!sentHeader?.startsWith('Bearer ')) return true;
      // A new token will not grant more than the last one did.
      if (bearer.params.error === 'insufficient_scope') return false;
      const key = scopeKey(scopes);
      const cached = this.tokens.get(key);
      // Another request already replaced the refused token: retry with the new one.
      if (cached && sentHeader !== `Bearer ${cached.token}`) return true;
      // Refused although we thought it valid (expired early, revoked): fetch a new one. The
      // caller bounds how often a request may go round this.
      this.tokens.delete(key);
      this.transport.debug(`${this.registry} refused the token for ${key}; requesting a new one`);
      return true;
    }
    if (basic) {
      this.mode = 'basic';
      if (c.kind !== 'basic') return false;
      return !sentHeader?.startsWith('Basic ');
    }
    return false;
  }

  /** The message for a final 401, naming registry and repository but never the secret. */
  async refusal(repo: string, detail: string): Promise<TarpushError> {
    const c = await this.credentials();
    if (c.kind === 'anonymous') {
      return new TarpushError(
        'auth',
        `${this.registry} requires authentication for ${repo} (no credentials found; use --username with --password-stdin, or docker login)`,
      );
    }
    return new TarpushError('auth', `${this.registry} refused the credentials for ${repo} (${detail})`);
  }

  private async token(scopes: string[], repo: string, force: boolean): Promise<CachedToken> {
    const key = scopeKey(scopes);
    const cached = this.tokens.get(key);
    if (!force && cached && cached.expiresAt > this.now()) return cached;
    let p = this.pending.get(key);
    if (!p) {
      p = this.fetchToken(scopes, repo).finally(() => this.pending.delete(key));
      this.pending.set(key, p);
    }
    const t = await p;
    this.tokens.set(key, t);
    return t;
  }

  private async fetchToken(scopes: string[], repo: string): Promise<CachedToken> {
    const challenge = this.bearer!;
    const realm = challenge.params.realm!;
    const service = challenge.params.service;
    const c = await this.credentials();
    let realmUrl: URL;
    try {
      realmUrl = new URL(realm);
    } catch {
      throw new TarpushError('registry', `${this.registry} sent an invalid token realm "${redactUrl(realm)}"`);
    }
    const started = this.now();
    let res;
    if (c.kind === 'identity') {
      const form = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: c.identityToken, client_id: CLIENT_ID });
      if (service) form.set('service', service);
      if (scopes.length) form.set('scope', scopes.join(' '));
      this.transport.debug(`requesting a token from ${redactUrl(realmUrl.href)} (OAuth2 refresh token) for ${scopes.join(' ')}`);
      res = await this.transport.send({
        method: 'POST',
        url: realmUrl.href,
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: form.toString(),
      });
    } else {
      if (service) realmUrl.searchParams.append('service', service);
      for (const s of scopes) realmUrl.searchParams.append('scope', s);
      const headers: Record<string, string> = {};
      if (c.kind === 'basic') headers.authorization = `Basic ${Buffer.from(`${c.username}:${c.password}`).toString('base64')}`;
      else realmUrl.searchParams.set('client_id', CLIENT_ID);
      this.transport.debug(
        `requesting a token from ${redactUrl(realmUrl.href)} (${c.kind === 'basic' ? 'with credentials' : 'anonymously'})`,
      );
      res = await this.transport.send({ method: 'GET', url: realmUrl.href, headers });
    }
    if (res.status === 401 || res.status === 403) {
      await res.dump();
      if (c.kind === 'anonymous') {
        throw new TarpushError(
          'auth',
          `${this.registry} requires authentication for ${repo} (no credentials found; use --username with --password-stdin, or docker login)`,
        );
      }
      throw new TarpushError('auth', `${this.registry} refused the credentials for ${repo} (token server answered ${res.status})`);
    }
    if (res.status !== 200) {
      await res.dump();
      throw new TarpushError('registry', `${this.registry}: token server ${redactUrl(realmUrl.origin)} answered ${res.status}`);
    }
    let body: { token?: unknown; access_token?: unknown; expires_in?: unknown; issued_at?: unknown };
    try {
      body = JSON.parse(await res.text()) as typeof body;
    } catch {
      throw new TarpushError('registry', `${this.registry}: token server ${redactUrl(realmUrl.origin)} sent a response that is not JSON`);
    }
    const token = typeof body.access_token === 'string' && body.access_token ? body.access_token : body.token;
    if (typeof token !== 'string' || token === '') {
      throw new TarpushError('registry', `${this.registry}: token server ${redactUrl(realmUrl.origin)} sent no token`);
    }
    this.secrets.add(token);
    const lifetime = typeof body.expires_in === 'number' && body.expires_in > 0 ? body.expires_in : DEFAULT_TOKEN_LIFETIME_S;
    // Stop using a token a little before it expires, so requests in flight do not race its end.
    const margin = Math.min(10, lifetime / 10) * 1000;
    const expiresAt = started + lifetime * 1000 - margin;
    this.transport.debug(`got a token for ${scopes.join(' ')} valid for ${lifetime} s`);
    return { token, expiresAt };
  }
}

function scopeKey(scopes: string[]): string {
  return [...scopes].sort().join(' ');
}

export function pullScope(repository: string): string {
  return `repository:${repository}:pull`;
}

export function pushScope(repository: string): string {
  return `repository:${repository}:pull,push`;
}

