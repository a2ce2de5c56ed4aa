/**
 * Scrubbing of anything that might carry a secret before it reaches a log line or an error:
 * tarpush never prints Authorization headers, tokens or passwords, not even with --debug.
 */

// Query parameters that are safe to show; every other value is replaced (presigned storage
// URLs carry signatures and credentials in their query strings).
const SAFE_QUERY = new Set(['digest', 'mount', 'from', 'service', 'scope', 'n', 'last', '_state']);

export function redactUrl(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return url.replace(/\?.*$/, '?…');
  }
  if (u.username || u.password) {
    u.username = u.username ? 'redacted' : '';
    u.password = '';
  }
  for (const key of [...u.searchParams.keys()]) {
    if (!SAFE_QUERY.has(key)) u.searchParams.set(key, 'redacted');
  }
  // _state is an HMAC'd blob, not a secret, but long and useless in a log line.
  if (u.searchParams.has('_state')) u.searchParams.set('_state', '…');
  return u.href;
}

/** Removes known secret strings from a message, as a last line of defence. */
export function scrub(message: string, secrets: Iterable<string | undefined>): string {
  let out = message;
  for (const s of secrets) {
    if (s && s.length >= 4) out = out.split(s).join('[redacted]');
  }
  return out;
}
