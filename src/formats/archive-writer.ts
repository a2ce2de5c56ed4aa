import { createWriteStream, type WriteStream } from 'node:fs';
import { open as openFile, rename } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { pipeline, type Readable, type Writable } from 'node:stream';
import { createGzip, constants as zlibConstants } from 'node:zlib';
import tar from 'tar-stream';
import { createTempPath, forgetTemp, releaseTemp } from '../archive/tempfiles.js';
import { TarpushError } from '../errors.js';
import { Annotation, type Descriptor } from '../image/descriptor.js';
import { parseDigest, sha256 } from '../image/digest.js';
import { goJson, parseDocument, serialiseIndex } from '../image/manifest.js';
import { MediaType } from '../image/mediatypes.js';
import type { Target } from '../image/target.js';
import type { Progress } from '../progress/progress.js';

/**
 * Writes ONE tar that is at the same time an OCI image layout (`oci-layout`, `index.json`,
 * `blobs/<alg>/<hex>`) and a `docker load` archive (`manifest.json`, `repositories`, pointing at
 * the same blob files, as Docker 25's `docker save` does). Blobs are stored exactly as received
 * (still compressed as the registry served them), each once however many images share it.
 *
 * A tar is sequential, so putBlob calls are queued and written one at a time; each blob streams
 * straight into its entry (the header carries desc.size), never buffered. If a source stream fails
 * mid-entry the tar cannot be repaired: the whole archive is aborted and every later call fails.
 *
 * The tar is written to a temp file beside the output and renamed into place by commit(); abort(),
 * a failure, process exit or Ctrl-C remove it (src/archive/tempfiles.ts).
 *
 * gzip: the whole tar stream goes through Node's streaming zlib (native, so faster than pure-JS
 * pako; determinism does not matter here because the blobs inside keep their own digests). The
 * default level is 1: the blobs are almost always compressed already, so higher levels cost a lot
 * of CPU for almost no gain.
 */
export interface ArchiveTargetOptions {
  /** gzip the whole tar (for `x.tar.gz`). */
  gzip?: boolean;
  /** zlib level for `gzip` (default 1). */
  gzipLevel?: number;
  /**
   * The repository (`registry.example/team/app`) tags given to putManifest belong to: it makes
   * the containerd image name and docker RepoTags. Without it, putManifest's tag must be a full
   * reference (`registry.example/team/app:v1`) for the image to get those.
   */
  imageName?: string;
  /** Modification time of every entry (default: the epoch, so equal inputs give equal archives). */
  mtime?: Date;
}

/** One image `docker load` can load: its config and layers by digest, and the names it gets. */
export interface DockerImageEntry {
  configDigest: string;
  layerDigests: string[];
  repoTags: string[];
}

export class ArchiveTarget implements Target {
  readonly where: string;
  private readonly temp: string;
  private readonly pack: tar.Pack;
  private readonly output: WriteStream;
  private readonly written: Promise<void>;
  private readonly mtime: Date;
  /** Serialises tar entries: each job starts when the previous one has finished. */
  private queue: Promise<void> = Promise.resolve();
  /** Every blob queued or written, so each lands in the tar once. */
  private readonly blobs = new Map<string, { size: number; done: Promise<void>; complete: boolean }>();
  private readonly dirs = new Set<string>();
  private readonly roots: Descriptor[] = [];
  private readonly dockerImages: DockerImageEntry[] = [];
  private failure?: Error;
  private state: 'open' | 'committing' | 'committed' | 'aborted' = 'open';

  constructor(
    readonly path: string,
    private readonly opts: ArchiveTargetOptions = {},
  ) {
    this.where = path;
    this.mtime = opts.mtime ?? new Date(0);
    this.temp = createTempPath(dirname(path), `.${basename(path)}.tmp-`);
    this.pack = tar.pack();
    this.output = createWriteStream(this.temp, { flags: 'wx' });
    const stages: (NodeJS.ReadableStream | NodeJS.WritableStream)[] = [this.pack as unknown as Readable];
    if (opts.gzip) stages.push(createGzip({ level: opts.gzipLevel ?? zlibConstants.Z_BEST_SPEED }));
    stages.push(this.output);
    this.written = new Promise<void>((resolve, reject) => {
      pipeline(stages as [Readable, ...Writable[]], (e) => (e ? reject(e) : resolve()));
    });
    // A write failure (disk full) surfaces through the queue; this only prevents an unhandled rejection.
    this.written.catch((e: Error) => this.fail(new TarpushError('input', `${path}: cannot write the archive (${e.message})`)));
    this.enqueue(() => this.writeBuffer('oci-layout', Buffer.from('{"imageLayoutVersion":"1.0.0"}'))).catch(() => undefined);
  }

  async exists(desc: Descriptor): Promise<boolean> {
    return this.blobs.get(desc.digest)?.complete === true;
  }

  async putBlob(desc: Descriptor, open: () => Promise<Readable>, progress?: Progress): Promise<void> {
    this.checkUsable();
    const known = this.blobs.get(desc.digest);
    if (known) {
      await known.done;
      return;
    }
    const name = this.blobName(desc.digest);
    const record = { size: desc.size, complete: false, done: Promise.resolve() };
    record.done = this.enqueue(async () => {
      await this.ensureDirs(name);
      await this.writeStream(name, desc.size, open, progress);
      record.complete = true;
    });
    this.blobs.set(desc.digest, record);
    try {
      await record.done;
    } catch (e) {
      // Only a failure before the entry started leaves the archive usable; then a retry may try again.
      if (!this.failure) this.blobs.delete(desc.digest);
      throw e;
    }
  }

  /**
   * Stores a manifest or index. `tag` (a bare tag, or a full reference `repo:tag`) makes it a root
   * of index.json (ref name = the tag, containerd name = the full reference) and, for a
   * single-platform image, an image of manifest.json.
   */
  async putManifest(desc: Descriptor, bytes: Buffer, tag?: string): Promise<void> {
    this.checkUsable();
    if (bytes.length !== desc.size || sha256(bytes) !== desc.digest) {
      throw new TarpushError('internal', `${this.where}: manifest bytes do not match ${desc.digest}`);
    }
    if (!this.blobs.has(desc.digest)) {
      const name = this.blobName(desc.digest);
      const record = { size: desc.size, complete: false, done: Promise.resolve() };
      record.done = this.enqueue(async () => {
        await this.ensureDirs(name);
        await this.writeBuffer(name, bytes);
        record.complete = true;
      });
      this.blobs.set(desc.digest, record);
    }
    await this.blobs.get(desc.digest)!.done;
    if (tag === undefined) return;
    const { refName, fullName } = this.namesFor(tag);
    const annotations: Record<string, string> = { [Annotation.refName]: refName };
    if (fullName) annotations[Annotation.containerdName] = fullName;
    this.addRoot(desc, annotations);
    if (!fullName) return;
    const doc = parseDocument(bytes, `${this.where}: ${desc.digest}`, desc.mediaType);
    if (doc.kind !== 'manifest') return;
    const config = doc.manifest.config;
    if (config.mediaType !== MediaType.ociConfig && config.mediaType !== MediaType.dockerConfig) return;
    this.addDockerImage(desc, config, doc.manifest.layers, [fullName]);
  }

  /**
   * Records a root in index.json. The descriptor is authoritative; `annotations` are merged over
   * its own. An entry with the same ref name (or, untagged, the same digest) is replaced.
   */
  addRoot(desc: Descriptor, annotations: Record<string, string> = {}): void {
    const entry: Descriptor = { ...desc };
    const merged = { ...(desc.annotations ?? {}), ...annotations };
    if (Object.keys(merged).length) entry.annotations = merged;
    else delete entry.annotations;
    const refName = merged[Annotation.refName];
    const fullName = merged[Annotation.containerdName];
    for (let i = this.roots.length - 1; i >= 0; i--) {
      const other = this.roots[i]!.annotations ?? {};
      const clash =
        refName !== undefined
          ? other[Annotation.refName] === refName && other[Annotation.containerdName] === fullName
          : other[Annotation.refName] === undefined && this.roots[i]!.digest === desc.digest;
      if (clash) this.roots.splice(i, 1);
    }
    this.roots.push(entry);
  }

  /**
   * Adds an image to manifest.json (docker load); a RepoTag moves from any older entry to this one.
   * Returns false, adding nothing, for an image with foreign layers (fetched from their URLs, so
   * not in the archive): docker load could not load it.
   */
  addDockerImage(_manifest: Descriptor, config: Descriptor, layers: Descriptor[], repoTags: string[]): boolean {
    if (layers.some((l) => l.urls?.length || l.mediaType === MediaType.dockerForeignLayer)) return false;
    this.addDockerEntry({ configDigest: config.digest, layerDigests: layers.map((l) => l.digest), repoTags });
    return true;
  }

  /** Writes index.json, manifest.json and repositories, ends the tar and renames it into place. */
  async commit(extra: { dockerManifests?: DockerImageEntry[] } = {}): Promise<void> {
    this.checkUsable();
    this.state = 'committing';
    for (const entry of extra.dockerManifests ?? []) this.addDockerEntry(entry);
    try {
      for (const img of this.dockerImages) {
        for (const digest of [img.configDigest, ...img.layerDigests]) {
          if (!this.blobs.has(digest)) {
            throw new TarpushError('internal', `${this.where}: manifest.json refers to ${digest}, which was never written`);
          }
        }
      }
      await this.enqueue(async () => {
        await this.writeBuffer('index.json', serialiseIndex(this.roots, MediaType.ociIndex));
        if (this.dockerImages.length) {
          await this.writeBuffer('manifest.json', Buffer.from(goJson(this.dockerManifestJson())));
          await this.writeBuffer('repositories', Buffer.from(goJson(this.repositoriesJson())));
        }
      });
      this.pack.finalize();
      await this.written;
      if (this.failure) throw this.failure;
      const fd = await openFile(this.temp, 'r');
      try {
        await fd.sync();
      } finally {
        await fd.close();
      }
      await rename(this.temp, this.path);
      forgetTemp(this.temp);
      this.state = 'committed';
    } catch (e) {
      await this.abort(e as Error);
      throw this.failure ?? e;
    }
  }

  /** Stops writing and removes the partial archive. Idempotent; a no-op after commit. */
  async abort(reason?: Error): Promise<void> {
    if (this.state === 'committed') return;
    this.fail(reason ?? new TarpushError('interrupted', `${this.where}: writing the archive was aborted`));
    await this.removed;
  }

  private removed?: Promise<void>;

  private fail(e: Error): void {
    if (this.failure) return;
    this.failure = e;
    this.state = 'aborted';
    this.pack.destroy(e);
    this.output.destroy();
    // Removed only once the file is closed: a file stream still opening would otherwise
    // create the file again after its removal.
    this.removed = new Promise<void>((resolve) => {
      if (this.output.closed) resolve();
      else this.output.once('close', () => resolve());
    }).then(() => releaseTemp(this.temp).catch(() => undefined));
  }

  private checkUsable(): void {
    if (this.failure) {
      throw new TarpushError(
        this.failure instanceof TarpushError ? this.failure.kind : 'internal',
        `${this.where}: the archive was aborted (${this.failure.message})`,
      );
    }
    if (this.state !== 'open') throw new TarpushError('internal', `${this.where}: the archive is already ${this.state}`);
  }

  private enqueue(job: () => Promise<void>): Promise<void> {
    const run = this.queue.then(() => {
      if (this.failure) throw this.failure;
      return job();
    });
    this.queue = run.catch(() => undefined);
    return run;
  }

  private blobName(digest: string): string {
    const { algorithm, hex } = parseDigest(digest);
    return `blobs/${algorithm}/${hex}`;
  }

  private namesFor(tag: string): { refName: string; fullName?: string } {
    if (this.opts.imageName) return { refName: tag, fullName: `${this.opts.imageName}:${tag}` };
    const split = splitReference(tag);
    return split ? { refName: split.tag, fullName: tag } : { refName: tag };
  }

  private addDockerEntry(entry: DockerImageEntry): void {
    for (const other of this.dockerImages) other.repoTags = other.repoTags.filter((t) => !entry.repoTags.includes(t));
    const same = this.dockerImages.find(
      (o) => o.configDigest === entry.configDigest && o.layerDigests.join() === entry.layerDigests.join(),
    );
    if (same) same.repoTags.push(...entry.repoTags);
    else this.dockerImages.push({ ...entry, repoTags: [...entry.repoTags] });
  }

  private dockerManifestJson(): unknown {
    return this.dockerImages.map((img) => ({
      Config: this.blobName(img.configDigest),
      RepoTags: img.repoTags,
      Layers: img.layerDigests.map((d) => this.blobName(d)),
    }));
  }

  /** Legacy `repositories`: repo → tag → top layer ID (here the top layer blob's hex). */
  private repositoriesJson(): Record<string, Record<string, string>> {
    const out: Record<string, Record<string, string>> = {};
    for (const img of this.dockerImages) {
      const top = img.layerDigests[img.layerDigests.length - 1];
      if (!top) continue;
      for (const repoTag of img.repoTags) {
        const split = splitReference(repoTag);
        if (!split) continue;
        (out[split.repository] ??= {})[split.tag] = parseDigest(top).hex;
      }
    }
    return out;
  }

  private async ensureDirs(name: string): Promise<void> {
    const parts = name.split('/').slice(0, -1);
    for (let i = 1; i <= parts.length; i++) {
      const dir = `${parts.slice(0, i).join('/')}/`;
      if (this.dirs.has(dir)) continue;
      this.dirs.add(dir);
      await this.startEntry({ name: dir, type: 'directory', mode: 0o755, mtime: this.mtime }).done;
    }
  }

  private async writeBuffer(name: string, bytes: Buffer): Promise<void> {
    await this.startEntry({ name, size: bytes.length, mode: 0o644, mtime: this.mtime, type: 'file' }, bytes).done;
  }

  private async writeStream(name: string, size: number, open: () => Promise<Readable>, progress?: Progress): Promise<void> {
    // Opened only now, when its turn comes, so no source sits idle (and times out) in the queue.
    const src = await open();
    const { sink, done } = this.startEntry({ name, size, mode: 0o644, mtime: this.mtime, type: 'file' });
    try {
      for await (const chunk of src) {
        progress?.advance((chunk as Buffer).length);
        if (!sink.write(chunk as Buffer)) await drained(sink);
      }
      sink.end();
      await done;
    } catch (e) {
      src.destroy();
      done.catch(() => undefined);
      // Part of the entry is in the tar already: nothing can make this archive whole again.
      this.fail(e as Error);
      throw e;
    }
  }

  /** Starts a tar entry; `done` settles once the entry is wholly in the tar, or failed. */
  private startEntry(header: Partial<tar.Header> & { name: string }, bytes?: Buffer): { sink: Sink; done: Promise<void> } {
    let sink!: Sink;
    const done = new Promise<void>((resolve, reject) => {
      const cb = (e?: Error | null): void => (e ? reject(e) : resolve());
      sink = (bytes ? this.pack.entry(header, bytes, cb) : this.pack.entry(header, cb)) as unknown as Sink;
    });
    // The callback reports the entry's failure; an 'error' event nobody listens to would crash.
    sink.on('error', () => undefined);
    return { sink, done };
  }
}

/** What tar-stream's entry sink (a streamx Writable) offers that this file uses. */
interface Sink {
  write(chunk: Buffer): boolean;
  end(): void;
  on(event: string, listener: (...args: any[]) => void): unknown;
  off(event: string, listener: (...args: any[]) => void): unknown;
}

function drained(sink: Sink): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const cleanup = (): void => {
      sink.off('drain', onDrain);
      sink.off('close', onClose);
      sink.off('error', onError);
    };
    const onDrain = (): void => {
      cleanup();
      resolve();
    };
    const onClose = (): void => {
      cleanup();
      reject(new Error('tar entry closed'));
    };
    const onError = (e: Error): void => {
      cleanup();
      reject(e);
    };
    sink.on('drain', onDrain);
    sink.on('close', onClose);
    sink.on('error', onError);
  });
}

/** `registry:5000/team/app:v1` → repository and tag; undefined without a tag (or with a digest). */
export function splitReference(ref: string): { repository: string; tag: string } | undefined {
  if (ref.includes('@')) return undefined;
  const slash = ref.lastIndexOf('/');
  const colon = ref.lastIndexOf(':');
  if (colon <= slash || colon === ref.length - 1) return undefined;
  return { repository: ref.slice(0, colon), tag: ref.slice(colon + 1) };
}
