import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { TarpushError } from '../errors.js';
import { DOCKER_HUB, normaliseRegistry } from './reference.js';

/** What tarpush authenticates with. Identity tokens are OAuth2 refresh tokens (`docker login` with SSO). */
export type Credentials =
  | { kind: 'basic'; username: string; password: string; source: string }
  | { kind: 'identity'; username?: string; identityToken: string; source: string }
  | { kind: 'anonymous' };

export const ANONYMOUS: Credentials = { kind: 'anonymous' };

export interface CredentialLookup {
  /** Registry name as in the reference (`docker.io`, `localhost:5000`). */
  registry: string;
  /** Repository path, for podman's per-namespace entries. */
  repository?: string;
  username?: string;
  password?: string;
  /** Environment to read DOCKER_CONFIG, HOME, REGISTRY_AUTH_FILE, XDG_RUNTIME_DIR and PATH from. */
  env?: NodeJS.ProcessEnv;
  /** Milliseconds a credential helper may take. */
  helperTimeoutMs?: number;
}

/** The key Docker itself uses for Docker Hub in config.json and with credential helpers. */
const DOCKER_HUB_CONFIG_KEY = 'https://index.docker.io/v1/';

interface AuthEntry {
  auth?: string;
  username?: string;
  password?: string;
  identitytoken?: string;
}

interface DockerConfig {
  auths?: Record<string, AuthEntry>;
  credHelpers?: Record<string, string>;
  credsStore?: string;
}

/** `https://host:5000/v1/` → `host:5000`, the way Docker matches config keys to a registry. */
function keyToRegistry(key: string): string {
  let k = key.trim();
  k = k.replace(/^[a-z][a-z0-9+.-]*:\/\//i, '');
  const slash = k.indexOf('/');
  if (slash >= 0) k = k.slice(0, slash);
  return normaliseRegistry(k);
}

/**
 * Resolves credentials for a registry: explicit username/password, then Docker's config.json
 * (inline auths, credHelpers, credsStore), then podman's auth.json, else anonymous.
 */
export async function resolveCredentials(lookup: CredentialLookup): Promise<Credentials> {
  const env = lookup.env ?? process.env;
  const registry = normaliseRegistry(lookup.registry);
  if (lookup.username !== undefined || lookup.password !== undefined) {
    if (!lookup.username) throw new TarpushError('usage', 'a password was given without a username');
    return { kind: 'basic', username: lookup.username, password: lookup.password ?? '', source: 'command line' };
  }

  const home = env.HOME ?? homedir();
  const dockerDir = env.DOCKER_CONFIG ?? join(home, '.docker');
  const dockerFile = join(dockerDir, 'config.json');
  const docker = (await readJsonFile(dockerFile)) as DockerConfig | undefined;
  if (docker) {
    const found = await fromDockerConfig(docker, dockerFile, registry, env, lookup.helperTimeoutMs ?? 30_000);
    if (found) return found;
  }

  for (const file of podmanAuthFiles(env, home)) {
    const podman = (await readJsonFile(file)) as DockerConfig | undefined;
    if (!podman) continue;
    const found = fromAuths(podman.auths, file, registry, lookup.repository);
    if (found) return found;
    // REGISTRY_AUTH_FILE replaces the default locations rather than adding to them.
    if (env.REGISTRY_AUTH_FILE) break;
  }
  return ANONYMOUS;
}

function podmanAuthFiles(env: NodeJS.ProcessEnv, home: string): string[] {
  if (env.REGISTRY_AUTH_FILE) return [env.REGISTRY_AUTH_FILE];
  const files: string[] = [];
  if (env.XDG_RUNTIME_DIR) files.push(join(env.XDG_RUNTIME_DIR, 'containers', 'auth.json'));
  files.push(join(env.XDG_CONFIG_HOME ?? join(home, '.config'), 'containers', 'auth.json'));
  return files;
}

async function readJsonFile(file: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw new TarpushError('auth', `${file}: cannot read credentials file (${(e as Error).message})`);
  }
  if (text.trim() === '') return undefined;
  try {
    const json = JSON.parse(text) as unknown;
    if (typeof json !== 'object' || json === null || Array.isArray(json)) {
      throw new Error('not a JSON object');
    }
    return json;
  } catch (e) {
    throw new TarpushError('auth', `${file}: invalid credentials file (${(e as Error).message})`);
  }
}

async function fromDockerConfig(
  config: DockerConfig,
  file: string,
  registry: string,
  env: NodeJS.ProcessEnv,
  timeoutMs: number,
): Promise<Credentials | undefined> {
  const helpers = config.credHelpers ?? {};
  const helperKey = Object.keys(helpers).find((k) => keyToRegistry(k) === registry);
  const serverUrl = registry === DOCKER_HUB ? DOCKER_HUB_CONFIG_KEY : registry;
  if (helperKey && helpers[helperKey]) {
    return runCredentialHelper(helpers[helperKey]!, serverUrl, env, timeoutMs);
  }
  const inline = fromAuths(config.auths, file, registry);
  if (inline) return inline;
  if (config.credsStore) {
    // A store keyed by the exact string `docker login` used: the canonical form first.
    const fromStore = await runCredentialHelper(config.credsStore, serverUrl, env, timeoutMs);
    if (fromStore) return fromStore;
  }
  return undefined;
}

function fromAuths(
  auths: Record<string, AuthEntry> | undefined,
  file: string,
  registry: string,
  repository?: string,
): Credentials | undefined {
  if (!auths || typeof auths !== 'object') return undefined;
  // podman allows `host/namespace` keys; the longest matching prefix of the repository wins.
  let best: { key: string; length: number } | undefined;
  for (const key of Object.keys(auths)) {
    const bare = key.replace(/^[a-z][a-z0-9+.-]*:\/\//i, '').replace(/\/+$/, '');
    const [host, ...pathParts] = bare.split('/');
    if (normaliseRegistry(host ?? '') !== registry) continue;
    let path = pathParts.join('/');
    if (path === 'v1' || path === 'v2') path = ''; // Docker's `https://host/v1/` form
    if (path !== '' && !(repository === path || repository?.startsWith(`${path}/`))) continue;
    if (!best || path.length > best.length) best = { key, length: path.length };
  }
  if (!best) return undefined;
  const entry = auths[best.key];
  if (!entry || typeof entry !== 'object') return undefined;
  const source = `${file} (${best.key})`;
  if (entry.identitytoken) {
    const username = entry.auth ? decodeAuth(entry.auth, source).username : entry.username;
    return { kind: 'identity', identityToken: entry.identitytoken, source, ...(username ? { username } : {}) };
  }
  if (entry.auth) {
    const { username, password } = decodeAuth(entry.auth, source);
    return { kind: 'basic', username, password, source };
  }
  if (entry.username) return { kind: 'basic', username: entry.username, password: entry.password ?? '', source };
  // An empty entry means "use the credential store", which the caller handles.
  return undefined;
}

function decodeAuth(auth: string, source: string): { username: string; password: string } {
  const decoded = Buffer.from(auth, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon <= 0) throw new TarpushError('auth', `${source}: "auth" is not base64 of "user:password"`);
  return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

/**
 * Runs `docker-credential-NAME get` with the server on stdin. "credentials not found" means
 * anonymous access, anything else going wrong is an auth error naming the helper (never its
 * output, which may contain the secret).
 */
export async function runCredentialHelper(
  name: string,
  serverUrl: string,
  env: NodeJS.ProcessEnv,
  timeoutMs: number,
): Promise<Credentials | undefined> {
  const program = `docker-credential-${name}`;
  const { code, stdout, stderr, error, timedOut } = await new Promise<{
    code: number | null;
    stdout: string;
    stderr: string;
    error?: Error;
    timedOut: boolean;
  }>((resolve) => {
    let out = '';
    let err = '';
    let timedOut = false;
    let settled = false;
    // Own process group, so a helper that hangs is killed together with whatever it started.
    const child = spawn(program, ['get'], { env, stdio: ['pipe', 'pipe', 'pipe'], detached: true });
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
      } catch {
        child.kill('SIGKILL');
      }
      child.stdout.destroy();
      child.stderr.destroy();
      finish({ code: null });
    }, timeoutMs);
    const finish = (r: { code: number | null; error?: Error }): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve({ ...r, stdout: out, stderr: err, timedOut });
    };
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    child.on('error', (e) => finish({ code: null, error: e }));
    child.on('close', (c) => finish({ code: c }));
    child.stdin.on('error', () => {}); // a helper that exits without reading stdin
    child.stdin.end(serverUrl);
  });
  if (error) {
    const why = (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'not found on PATH' : error.message;
    throw new TarpushError('auth', `credential helper ${program} for ${serverUrl}: ${why}`);
  }
  if (timedOut) throw new TarpushError('auth', `credential helper ${program} for ${serverUrl}: timed out after ${timeoutMs} ms`);
  if (code !== 0) {
    if (/credentials not found/i.test(stdout) || /credentials not found/i.test(stderr)) return undefined;
    throw new TarpushError('auth', `credential helper ${program} for ${serverUrl} failed (exit code ${code})`);
  }
  let parsed: { Username?: unknown; Secret?: unknown };
  try {
    parsed = JSON.parse(stdout) as typeof parsed;
  } catch {
    throw new TarpushError('auth', `credential helper ${program} for ${serverUrl} printed something that is not JSON`);
  }
  const source = `credential helper ${program}`;
  const username = typeof parsed.Username === 'string' ? parsed.Username : '';
  const secret = typeof parsed.Secret === 'string' ? parsed.Secret : '';
  if (secret === '' && username === '') return undefined;
  // Docker's convention: the username "<token>" marks the secret as an identity token.
  if (username === '<token>') return { kind: 'identity', identityToken: secret, source };
  return { kind: 'basic', username, password: secret, source };
}
