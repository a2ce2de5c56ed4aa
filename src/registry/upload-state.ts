import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';

/**
 * Where an unfinished blob upload can be picked up by a later run: the registry's upload URL
 * (its latest Location) and the offset the registry confirmed, per (registry, repository,
 * digest). Written after every confirmed chunk, removed when the blob is complete.
 */
export interface SavedUpload {
  registry: string;
  repository: string;
  digest: string;
  size: number;
  location: string;
  offset: number;
  updated: string;
}

const MAX_AGE_MS = 7 * 24 * 3600 * 1000;

export function defaultStateDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.TARPUSH_STATE_DIR) return env.TARPUSH_STATE_DIR;
  const cache = env.XDG_CACHE_HOME || join(env.HOME || homedir(), '.cache');
  return join(cache, 'tarpush', 'uploads');
}

export class UploadStateStore {
  constructor(readonly dir: string) {}

  private file(registry: string, repository: string, digest: string): string {
    const key = createHash('sha256').update(`${registry}/${repository}@${digest}`).digest('hex').slice(0, 32);
    return join(this.dir, `${key}.json`);
  }

  async load(registry: string, repository: string, digest: string): Promise<SavedUpload | undefined> {
    try {
      const s = JSON.parse(await readFile(this.file(registry, repository, digest), 'utf8')) as SavedUpload;
      if (s.registry !== registry || s.repository !== repository || s.digest !== digest) return undefined;
      if (typeof s.location !== 'string' || typeof s.offset !== 'number') return undefined;
      // Registries purge abandoned uploads (distribution after a week): do not even ask.
      if (Date.now() - Date.parse(s.updated) > MAX_AGE_MS) {
        await this.remove(registry, repository, digest);
        return undefined;
      }
      return s;
    } catch {
      // Missing or unreadable state only costs a fresh upload.
      return undefined;
    }
  }

  async save(s: Omit<SavedUpload, 'updated'>): Promise<void> {
    const file = this.file(s.registry, s.repository, s.digest);
    const tmp = `${file}.${randomBytes(4).toString('hex')}.tmp`;
    try {
      await mkdir(this.dir, { recursive: true, mode: 0o700 });
      await writeFile(tmp, JSON.stringify({ ...s, updated: new Date().toISOString() }), { mode: 0o600 });
      await rename(tmp, file);
    } catch {
      // Resume across runs is an optimisation; a read-only cache must not fail the push.
      await rm(tmp, { force: true }).catch(() => {});
    }
  }

  async remove(registry: string, repository: string, digest: string): Promise<void> {
    await rm(this.file(registry, repository, digest), { force: true }).catch(() => {});
  }
}
