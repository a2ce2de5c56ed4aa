import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, unlink, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { isAbsolute, join } from 'node:path';
import { isDigest, parseDigest, type Digest } from '../image/digest.js';

/**
 * Remembers what tarpush's own gzip made of an uncompressed layer, so `digest` and a repeated
 * push need not compress again. Only an optimisation: every failure (missing, unreadable,
 * truncated, corrupt or mismatched entry, unwritable directory) reads as a miss or a skipped
 * write, and pushes still verify every byte they send against the descriptor.
 */
export interface CachedCompression {
  digest: Digest;
  size: number;
}

export interface CompressionCacheOptions {
  /** Cache directory; default from TARPUSH_CACHE_DIR, else $XDG_CACHE_HOME/tarpush, else ~/.cache/tarpush. */
  dir?: string;
  /** No reads, no writes. */
  disabled?: boolean;
  /** Where to say why an entry was ignored or a write failed (a --debug line). */
  debug?: (message: string) => void;
}

const ENTRY_VERSION = 1;
const MAX_ENTRY_BYTES = 4096;
const SAFE_KEY = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.TARPUSH_CACHE_DIR) return env.TARPUSH_CACHE_DIR;
  // The XDG spec says relative values are to be ignored.
  const xdg = env.XDG_CACHE_HOME;
  const base = xdg && isAbsolute(xdg) ? xdg : join(homedir(), '.cache');
  return join(base, 'tarpush');
}

interface Entry {
  version: number;
  diffId: Digest;
  settingsKey: string;
  digest: Digest;
  size: number;
  check: string;
}

export class CompressionCache {
  readonly dir: string;
  readonly disabled: boolean;
  private readonly debug: (message: string) => void;

  constructor(opts: CompressionCacheOptions = {}) {
    this.dir = opts.dir ?? defaultCacheDir();
    this.disabled = opts.disabled === true;
    this.debug = opts.debug ?? (() => {});
  }

  static disabled(): CompressionCache {
    return new CompressionCache({ disabled: true });
  }

  async get(diffId: Digest, settingsKey: string): Promise<CachedCompression | undefined> {
    if (this.disabled) return undefined;
    const file = this.entryPath(diffId, settingsKey);
    if (!file) return undefined;
    let text: string;
    try {
      const bytes = await readFile(file);
      if (bytes.length > MAX_ENTRY_BYTES) {
        this.debug(`compression cache: ignoring oversized entry ${file}`);
        return undefined;
      }
      text = bytes.toString('utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') {
        this.debug(`compression cache: cannot read ${file}: ${(e as Error).message}`);
      }
      return undefined;
    }
    const entry = validEntry(text, diffId, settingsKey);
    if (!entry) {
      this.debug(`compression cache: ignoring corrupt or mismatched entry ${file}`);
      return undefined;
    }
    return { digest: entry.digest, size: entry.size };
  }

  async put(diffId: Digest, settingsKey: string, value: CachedCompression): Promise<void> {
    if (this.disabled) return;
    const file = this.entryPath(diffId, settingsKey);
    if (!file) return;
    if (!isDigest(value.digest) || !Number.isSafeInteger(value.size) || value.size < 0) {
      this.debug(`compression cache: not storing invalid value for ${diffId}`);
      return;
    }
    const body = { version: ENTRY_VERSION, diffId, settingsKey, digest: value.digest, size: value.size };
    const entry: Entry = { ...body, check: checksum(body) };
    const dir = join(this.dir, 'gzip', settingsKey);
    const tmp = join(dir, `.${parseDigest(diffId).hex}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
    try {
      await mkdir(dir, { recursive: true });
      await writeFile(tmp, `${JSON.stringify(entry)}\n`, { mode: 0o644 });
      await rename(tmp, file);
    } catch (e) {
      this.debug(`compression cache: not written (${(e as Error).message})`);
      await unlink(tmp).catch(() => undefined);
    }
  }

  /** Undefined for keys that cannot name a file safely (the cache is then simply not used). */
  private entryPath(diffId: Digest, settingsKey: string): string | undefined {
    if (!isDigest(diffId) || !SAFE_KEY.test(settingsKey)) {
      this.debug(`compression cache: unusable key ${JSON.stringify(diffId)} / ${JSON.stringify(settingsKey)}`);
      return undefined;
    }
    const { algorithm, hex } = parseDigest(diffId);
    return join(this.dir, 'gzip', settingsKey, `${algorithm}-${hex}.json`);
  }
}

function checksum(body: Omit<Entry, 'check'>): string {
  const canonical = JSON.stringify([body.version, body.diffId, body.settingsKey, body.digest, body.size]);
  return createHash('sha256').update(canonical).digest('hex');
}

function validEntry(text: string, diffId: Digest, settingsKey: string): Entry | undefined {
  let e: unknown;
  try {
    e = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof e !== 'object' || e === null) return undefined;
  const x = e as Partial<Entry>;
  if (x.version !== ENTRY_VERSION || x.diffId !== diffId || x.settingsKey !== settingsKey) return undefined;
  if (!isDigest(x.digest) || typeof x.size !== 'number' || !Number.isSafeInteger(x.size) || x.size < 0) return undefined;
  const body = { version: x.version, diffId: x.diffId, settingsKey: x.settingsKey, digest: x.digest, size: x.size };
  if (x.check !== checksum(body)) return undefined;
  return x as Entry;
}
