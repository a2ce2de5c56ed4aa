import { usageError } from '../errors.js';
import { isDigest, type Digest } from '../image/digest.js';

/**
 * A fully normalised image reference: `alpine` becomes docker.io/library/alpine:latest. `tag` is
 * filled with "latest" only when neither a tag nor a digest was given, so `app@sha256:…` stays a
 * pure digest reference.
 */
export interface Reference {
  /** The registry as users name it (`docker.io`, `localhost:5000`, `[::1]:5000`). */
  registry: string;
  repository: string;
  tag?: string;
  digest?: Digest;
}

export const DOCKER_HUB = 'docker.io';
/** The host that actually serves Docker Hub's registry API. */
export const DOCKER_HUB_API_HOST = 'registry-1.docker.io';
const DOCKER_HUB_ALIASES = new Set(['docker.io', 'index.docker.io', 'registry-1.docker.io', 'registry.hub.docker.com']);

const MAX_NAME_LENGTH = 255;
const TAG = /^[\w][\w.-]{0,127}$/;
// One path component: lowercase alphanumerics joined by `.`, `_`, `__` or runs of `-`.
const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const DOMAIN_COMPONENT = /^(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])$/;
const IPV6_HOST = /^\[[0-9a-fA-F:.]+(?:%[\w.-]+)?\]$/;

function invalid(input: string, problem: string): Error {
  return usageError(`invalid reference "${input}": ${problem}`);
}

function validHost(host: string): boolean {
  if (IPV6_HOST.test(host)) return host.includes(':');
  return host.split('.').every((c) => DOMAIN_COMPONENT.test(c));
}

function validDomain(domain: string): boolean {
  const m = /^(\[[^\]]*\]|[^:]*)(?::(\d+))?$/.exec(domain);
  if (!m) return false;
  const port = m[2];
  if (port !== undefined && (port.length > 5 || Number(port) > 65535)) return false;
  return validHost(m[1]!);
}

/**
 * Whether the first path element names a registry rather than a Docker Hub namespace: it does
 * when it contains a dot or a colon, is `localhost`, or has uppercase letters (which a
 * repository may not have), exactly as the Docker CLI decides.
 */
function looksLikeDomain(first: string): boolean {
  return /[.:]/.test(first) || first === 'localhost' || first.startsWith('[') || first !== first.toLowerCase();
}

export function parseReference(input: string): Reference {
  if (input === '') throw invalid(input, 'empty reference');
  if (/\s/.test(input)) throw invalid(input, 'contains whitespace');

  let rest = input;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!isDigest(digest)) throw invalid(input, `invalid digest "${digest}"`);
  }

  let tag: string | undefined;
  const lastSlash = rest.lastIndexOf('/');
  const colon = rest.indexOf(':', lastSlash + 1);
  // A colon after the last slash is a tag; one before it belongs to host:port.
  if (colon >= 0 && !(lastSlash < 0 && rest.startsWith('['))) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) {
      throw invalid(input, `invalid tag "${tag}" (letters, digits, "_", "." and "-", at most 128, not starting with "." or "-")`);
    }
  }

  if (rest === '') throw invalid(input, 'missing repository name');
  let registry: string;
  let repository: string;
  const slash = rest.indexOf('/');
  if (slash >= 0 && looksLikeDomain(rest.slice(0, slash))) {
    registry = rest.slice(0, slash);
    repository = rest.slice(slash + 1);
    if (!validDomain(registry)) throw invalid(input, `invalid registry host "${registry}"`);
  } else {
    registry = DOCKER_HUB;
    repository = rest;
  }
  if (rest.length > MAX_NAME_LENGTH) throw invalid(input, `name longer than ${MAX_NAME_LENGTH} characters`);
  if (repository === '') throw invalid(input, 'missing repository name');
  if (repository !== repository.toLowerCase()) throw invalid(input, 'repository name must be lowercase');
  for (const component of repository.split('/')) {
    if (!PATH_COMPONENT.test(component)) {
      throw invalid(
        input,
        component === ''
          ? 'empty path component in repository name'
          : `invalid repository path component "${component}" (lowercase letters and digits, separated by ".", "_", "__" or "-")`,
      );
    }
  }

  registry = normaliseRegistry(registry);
  if (registry === DOCKER_HUB && !repository.includes('/')) repository = `library/${repository}`;
  const ref: Reference = { registry, repository };
  if (tag !== undefined) ref.tag = tag;
  if (digest !== undefined) ref.digest = digest;
  if (tag === undefined && digest === undefined) ref.tag = 'latest';
  return ref;
}

/** `index.docker.io` and friends are all Docker Hub; hostnames are case-insensitive. */
export function normaliseRegistry(registry: string): string {
  const lower = registry.toLowerCase();
  return DOCKER_HUB_ALIASES.has(lower) ? DOCKER_HUB : lower;
}

/** The fully qualified form: `docker.io/library/alpine:latest`, `host/x:tag@sha256:…`. */
export function formatReference(ref: Reference): string {
  let s = `${ref.registry}/${ref.repository}`;
  if (ref.tag !== undefined) s += `:${ref.tag}`;
  if (ref.digest !== undefined) s += `@${ref.digest}`;
  return s;
}

/** `registry/repository` without tag or digest, for messages about a repository. */
export function repositoryName(ref: Pick<Reference, 'registry' | 'repository'>): string {
  return `${ref.registry}/${ref.repository}`;
}

/** The host:port tarpush talks HTTP to for a registry name. */
export function apiHost(registry: string): string {
  return normaliseRegistry(registry) === DOCKER_HUB ? DOCKER_HUB_API_HOST : registry;
}

/** Parses without throwing; undefined for anything that is not a valid reference. */
export function tryParseReference(input: string): Reference | undefined {
  try {
    return parseReference(input);
  } catch {
    return undefined;
  }
}

/**
 * Whether two names denote the same image: `alpine` = `docker.io/library/alpine:latest`, used
 * to match the tags stored in archives against what the user typed. Unparseable names never
 * match anything (archive tags can be garbage).
 */
export function sameImageName(a: string | Reference, b: string | Reference): boolean {
  const ra = typeof a === 'string' ? tryParseReference(a) : a;
  const rb = typeof b === 'string' ? tryParseReference(b) : b;
  if (!ra || !rb) return false;
  return (
    ra.registry === rb.registry &&
    ra.repository === rb.repository &&
    ra.tag === rb.tag &&
    ra.digest === rb.digest
  );
}
