/**
 * Parsing of `WWW-Authenticate` (RFC 7235): one header may carry several challenges, each a
 * scheme followed by either a token68 or comma-separated parameters whose values are tokens or
 * quoted strings (with backslash escapes, and commas that do not separate anything).
 */
export interface Challenge {
  /** Lowercased: `basic`, `bearer`. */
  scheme: string;
  /** Parameter names lowercased; values as sent, unquoted. */
  params: Record<string, string>;
  token68?: string;
}

const TCHAR = /[!#$%&'*+\-.^_`|~0-9A-Za-z]/;
const TOKEN68_CHAR = /[A-Za-z0-9\-._~+/]/;

export function parseChallenges(header: string | string[] | undefined): Challenge[] {
  if (header === undefined) return [];
  if (Array.isArray(header)) return header.flatMap((h) => parseChallenges(h));
  const s = header;
  let i = 0;
  const out: Challenge[] = [];

  const skipWs = (): void => {
    while (i < s.length && (s[i] === ' ' || s[i] === '\t')) i++;
  };
  const skipWsAndCommas = (): void => {
    while (i < s.length && (s[i] === ' ' || s[i] === '\t' || s[i] === ',')) i++;
  };
  const readToken = (): string => {
    const start = i;
    while (i < s.length && TCHAR.test(s[i]!)) i++;
    return s.slice(start, i);
  };
  // Lenient: servers send unquoted URLs, which are not RFC tokens; a bare value ends at a comma or space.
  const readBare = (): string => {
    const start = i;
    while (i < s.length && s[i] !== ',' && s[i] !== ' ' && s[i] !== '\t') i++;
    return s.slice(start, i);
  };
  const readQuoted = (): string => {
    // s[i] is the opening quote
    i++;
    let value = '';
    while (i < s.length && s[i] !== '"') {
      if (s[i] === '\\' && i + 1 < s.length) i++;
      value += s[i];
      i++;
    }
    i++; // closing quote (or end of input for a malformed header)
    return value;
  };
  /** True when what follows (after whitespace) is `name =` i.e. a parameter, not a new scheme. */
  const atParam = (): boolean => {
    const save = i;
    skipWs();
    const name = readToken();
    skipWs();
    const result = name !== '' && s[i] === '=' && !isToken68End(save);
    i = save;
    return result;
  };
  /** Distinguishes `abc==` (a token68 ending in padding) from `abc=value`. */
  const isToken68End = (from: number): boolean => {
    let j = from;
    while (j < s.length && (s[j] === ' ' || s[j] === '\t')) j++;
    while (j < s.length && TOKEN68_CHAR.test(s[j]!)) j++;
    if (s[j] !== '=') return false;
    while (j < s.length && s[j] === '=') j++;
    while (j < s.length && (s[j] === ' ' || s[j] === '\t')) j++;
    return j >= s.length || s[j] === ',';
  };

  while (i < s.length) {
    skipWsAndCommas();
    if (i >= s.length) break;
    const scheme = readToken();
    if (scheme === '') {
      i++; // garbage character: skip it rather than loop forever
      continue;
    }
    const challenge: Challenge = { scheme: scheme.toLowerCase(), params: {} };
    out.push(challenge);
    skipWs();
    if (i < s.length && s[i] !== ',' && isToken68End(i) && !/^[^=]*=\s*"/.test(s.slice(i))) {
      const start = i;
      while (i < s.length && (TOKEN68_CHAR.test(s[i]!) || s[i] === '=')) i++;
      challenge.token68 = s.slice(start, i);
      continue;
    }
    // Parameters: name=value pairs separated by commas, until a token not followed by "=".
    for (;;) {
      skipWs();
      if (!atParam()) break;
      const name = readToken().toLowerCase();
      skipWs();
      i++; // '='
      skipWs();
      const value = s[i] === '"' ? readQuoted() : readBare();
      challenge.params[name] = value;
      skipWs();
      if (s[i] !== ',') break;
      // Consume commas only if another parameter follows; otherwise leave them for the outer loop.
      const save = i;
      skipWsAndCommas();
      if (!atParam()) {
        i = save;
        break;
      }
    }
  }
  return out;
}

/** The first challenge with the given scheme (case-insensitive). */
export function findChallenge(challenges: Challenge[], scheme: string): Challenge | undefined {
  const lower = scheme.toLowerCase();
  return challenges.find((c) => c.scheme === lower);
}
