import { createWriteStream } from 'node:fs';
import { mkdir, readdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { createTempPath, forgetTemp, releaseTemp } from '../archive/tempfiles.js';
import { TarpushError, inputError } from '../errors.js';
import { Annotation, type Descriptor } from '../image/descriptor.js';
import { parseDigest, sha256 } from '../image/digest.js';
import { checkDescriptor, parseJson, serialiseIndex } from '../image/manifest.js';
import { MediaType } from '../image/mediatypes.js';
import type { Target } from '../image/target.js';
import type { Progress } from '../progress/progress.js';

const LAYOUT_FILE = '{"imageLayoutVersion":"1.0.0"}';

/**
 * An OCI image layout directory as a copy destination. Blobs land under `blobs/<alg>/<hex>` via a
 * temp file in the same directory and a rename, so a reader never sees a partial blob and an
 * interrupted copy leaves only blobs that are whole. index.json is rewritten the same way.
 *
 * Roots: `putManifest(desc, bytes, tag)` records `desc` in index.json with the tag as
 * `org.opencontainers.image.ref.name`; callers that want more (the containerd image name, or an
 * untagged root) use `addRoot`.
 */
export class OciLayoutTarget implements Target {
  readonly where: string;
  private ready?: Promise<void>;
  /** index.json updates are read-modify-write: one at a time. */
  private indexLock: Promise<void> = Promise.resolve();
  /** Blobs being written now, so concurrent copies of images sharing a layer write it once. */
  private readonly inFlight = new Map<string, Promise<void>>();

  constructor(readonly dir: string) {
    this.where = `oci:${dir}`;
  }

  async exists(desc: Descriptor): Promise<boolean> {
    return (await this.blobSize(desc.digest)) === desc.size;
  }

  async putBlob(desc: Descriptor, open: () => Promise<Readable>, progress?: Progress): Promise<void> {
    const running = this.inFlight.get(desc.digest);
    if (running) {
      await running;
      return;
    }
    const job = this.writeBlob(desc, open, progress);
    this.inFlight.set(desc.digest, job);
    try {
      await job;
    } finally {
      this.inFlight.delete(desc.digest);
    }
  }

  private async writeBlob(desc: Descriptor, open: () => Promise<Readable>, progress?: Progress): Promise<void> {
    await this.init();
    if (await this.exists(desc)) {
      return;
    }
    const dir = await this.blobDir(desc.digest);
    const final = this.blobPath(desc.digest);
    const tmp = createTempPath(dir, '.tmp-');
    try {
      const src = await open();
      await streamToFile(src, tmp, progress);
      const { size } = await stat(tmp);
      // The stream is verified by the caller's Content; this guards against a source that was not.
      if (size !== desc.size) throw inputError(this.where, `blob ${desc.digest}: got ${size} bytes where ${desc.size} were expected`);
      await rename(tmp, final);
      forgetTemp(tmp);
    } catch (e) {
      await releaseTemp(tmp);
      throw e;
    }
  }

  async putManifest(desc: Descriptor, bytes: Buffer, tag?: string): Promise<void> {
    await this.init();
    if (bytes.length !== desc.size || sha256(bytes) !== desc.digest) {
      throw new TarpushError('internal', `${this.where}: manifest bytes do not match ${desc.digest}`);
    }
    if (!(await this.exists(desc))) {
      const dir = await this.blobDir(desc.digest);
      await writeAtomically(dir, this.blobPath(desc.digest), bytes);
    }
    if (tag !== undefined) await this.addRoot(desc, { [Annotation.refName]: tag });
  }

  /**
   * Records `desc` as a root in index.json. The descriptor given is authoritative (platform,
   * annotations); `annotations` are merged over its own. An existing entry with the same ref name
   * is replaced; without a ref name, an existing untagged entry of the same digest is replaced.
   */
  async addRoot(desc: Descriptor, annotations: Record<string, string> = {}): Promise<void> {
    await this.init();
    const entry: Descriptor = { ...desc };
    const merged = { ...(desc.annotations ?? {}), ...annotations };
    if (Object.keys(merged).length) entry.annotations = merged;
    else delete entry.annotations;
    const refName = merged[Annotation.refName];
    await this.withIndex((entries) => {
      const kept = entries.filter((e) => {
        const name = e.annotations?.[Annotation.refName];
        if (refName !== undefined) return name !== refName;
        return !(name === undefined && e.digest === desc.digest);
      });
      kept.push(entry);
      return kept;
    });
  }

  /** The entries of index.json as they are now. */
  async roots(): Promise<Descriptor[]> {
    await this.init();
    return this.readIndex();
  }

  private init(): Promise<void> {
    this.ready ??= (async () => {
      await mkdir(this.dir, { recursive: true });
      const layoutPath = join(this.dir, 'oci-layout');
      let layout: Buffer | undefined;
      try {
        layout = await readFile(layoutPath);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw inputError(layoutPath, `cannot be read (${(e as Error).message})`);
      }
      if (layout === undefined) {
        // Never turn someone's unrelated directory into a layout by scattering files in it.
        const present = (await readdir(this.dir)).filter((n) => !n.startsWith('.tmp-'));
        if (present.length > 0) {
          throw inputError(this.dir, 'is not empty and is not an OCI layout (no oci-layout file); give a new or empty directory');
        }
        await writeAtomically(this.dir, layoutPath, Buffer.from(LAYOUT_FILE));
      } else {
        const json = parseJson(layout, layoutPath) as { imageLayoutVersion?: unknown };
        if (typeof json?.imageLayoutVersion !== 'string' || !json.imageLayoutVersion.startsWith('1.')) {
          throw inputError(layoutPath, `unsupported imageLayoutVersion ${JSON.stringify(json?.imageLayoutVersion)}`);
        }
      }
      try {
        await stat(join(this.dir, 'index.json'));
      } catch {
        await writeAtomically(this.dir, join(this.dir, 'index.json'), serialiseIndex([]));
      }
      await mkdir(join(this.dir, 'blobs'), { recursive: true });
    })();
    return this.ready;
  }

  private async readIndex(): Promise<Descriptor[]> {
    const path = join(this.dir, 'index.json');
    const json = parseJson(await readFile(path), path);
    if (typeof json !== 'object' || json === null || Array.isArray(json)) throw inputError(path, 'is not a JSON object');
    const manifests = (json as { manifests?: unknown }).manifests;
    if (manifests === null || manifests === undefined) return [];
    if (!Array.isArray(manifests)) throw inputError(path, '"manifests" is not a list');
    return manifests.map((m, i) => checkDescriptor(m, `${path}: manifests[${i}]`));
  }

  private withIndex(update: (entries: Descriptor[]) => Descriptor[]): Promise<void> {
    const run = this.indexLock.then(async () => {
      const entries = update(await this.readIndex());
      await writeAtomically(this.dir, join(this.dir, 'index.json'), serialiseIndex(entries, MediaType.ociIndex));
    });
    this.indexLock = run.catch(() => undefined);
    return run;
  }

  private blobPath(digest: string): string {
    const { algorithm, hex } = parseDigest(digest);
    return join(this.dir, 'blobs', algorithm, hex);
  }

  private async blobDir(digest: string): Promise<string> {
    const dir = join(this.dir, 'blobs', parseDigest(digest).algorithm);
    await mkdir(dir, { recursive: true });
    return dir;
  }

  private async blobSize(digest: string): Promise<number | undefined> {
    try {
      const s = await stat(this.blobPath(digest));
      return s.isFile() ? s.size : undefined;
    } catch {
      return undefined;
    }
  }
}

async function streamToFile(src: Readable, path: string, progress?: Progress): Promise<void> {
  const out = createWriteStream(path, { flags: 'wx' });
  try {
    for await (const chunk of src) {
      progress?.advance((chunk as Buffer).length);
      if (!out.write(chunk)) {
        await new Promise<void>((resolve, reject) => {
          const onError = (e: Error) => reject(e);
          out.once('error', onError);
          out.once('drain', () => {
            out.off('error', onError);
            resolve();
          });
        });
      }
    }
  } catch (e) {
    out.destroy();
    await new Promise<void>((r) => out.once('close', () => r()));
    throw e;
  }
  await new Promise<void>((resolve, reject) => {
    out.once('error', reject);
    out.end(() => resolve());
  });
}

/** Small files (manifests, index.json, oci-layout): temp file beside the target, then rename. */
async function writeAtomically(dir: string, path: string, bytes: Buffer): Promise<void> {
  const tmp = createTempPath(dir, '.tmp-');
  try {
    await writeFile(tmp, bytes, { flag: 'wx' });
    await rename(tmp, path);
    forgetTemp(tmp);
  } catch (e) {
    await releaseTemp(tmp);
    throw e;
  }
}
