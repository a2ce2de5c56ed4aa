import { createReadStream, createWriteStream } from 'node:fs';
import { createHash } from 'node:crypto';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { FileTree } from '../archive/filetree.js';
import { createTempPath, releaseTemp } from '../archive/tempfiles.js';
import { sniffCompression } from '../archive/compression.js';
import { CompressionCache } from '../compress/cache.js';
import { createGzipStream, DEFAULT_GZIP_SETTINGS, settingsKey, gzipDescribe } from '../compress/gzip.js';
import { inputError } from '../errors.js';
import type { Content } from '../image/content.js';
import type { Descriptor } from '../image/descriptor.js';
import { DigestingStream, sha256, verifyStream, type Digest } from '../image/digest.js';
import { serialiseManifest } from '../image/manifest.js';
import { mapLimit } from '../limit.js';
import type { ProgressReporter } from '../progress/progress.js';
import { MediaType, layerMediaType, type LayerCompression, type ManifestFormat } from '../image/mediatypes.js';

/**
 * Images without a manifest of their own (legacy `docker save`, crane/kaniko tarballs): tarpush
 * builds the manifest push would upload. Already compressed layers are used as they are;
 * uncompressed ones are gzipped deterministically (so the digest printed offline is the one the
 * registry gets), or kept as they are with `compression: 'none'`.
 */
export interface SynthesisOptions {
  format: ManifestFormat;
  compression: 'gzip' | 'none';
  cache?: CompressionCache;
  /**
   * When a layer must be compressed to learn its digest, keep the compressed bytes in a temp file
   * here so a later open() (push, layout import) does not compress it again. Without it the
   * compressed bytes are only hashed (enough for `digest` and `load`).
   */
  spoolDir?: string | false;
  /** Says (with --debug) when a layer is compressed, so a run can show it never does so twice. */
  reporter?: ProgressReporter;
}

export const DEFAULT_SYNTHESIS: SynthesisOptions = { format: 'docker', compression: 'gzip' };

class Lazy<T> {
  private value?: Promise<T>;
  constructor(private readonly make: () => Promise<T>) {}
  get(): Promise<T> {
    this.value ??= this.make();
    return this.value;
  }
}

async function hashFile(tree: FileTree, name: string): Promise<{ digest: Digest; size: number }> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of tree.open(name)) {
    hash.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { digest: `sha256:${hash.digest('hex')}`, size };
}

/** crane and kaniko name compressed layers `<sha256 of the file>.tar.gz`. */
function craneDigest(member: string): Digest | undefined {
  const hex = /(?:^|\/)([a-f0-9]{64})\.tar\.(?:gz|zst)$/.exec(member)?.[1];
  return hex ? `sha256:${hex}` : undefined;
}

async function sniffMember(tree: FileTree, name: string): Promise<LayerCompression> {
  const size = tree.size(name) ?? 0;
  if (size === 0) return 'none';
  const chunks: Buffer[] = [];
  for await (const c of tree.open(name, { start: 0, end: Math.min(size, 8) })) chunks.push(c as Buffer);
  const kind = sniffCompression(Buffer.concat(chunks));
  if (kind === 'gzip' || kind === 'zstd') return kind;
  if (kind === 'none') return 'none';
  throw inputError(tree.where, `layer ${name} is ${kind}-compressed, which image layers cannot be`);
}

/** A layer stored in the archive as a file; its descriptor may need compression to be known. */
export class ArchiveLayer implements Content {
  private spool?: string;
  private readonly descriptor: Lazy<Descriptor>;
  private readonly stored: Lazy<LayerCompression>;

  constructor(
    private readonly tree: FileTree,
    readonly member: string,
    readonly diffId: Digest | undefined,
    private readonly opts: SynthesisOptions,
  ) {
    this.descriptor = new Lazy(() => this.computeDescriptor());
    this.stored = new Lazy(() => sniffMember(tree, member));
  }

  describe(): Promise<Descriptor> {
    return this.descriptor.get();
  }

  async children(): Promise<Content[]> {
    return [];
  }

  private willCompress(stored: LayerCompression): boolean {
    return stored === 'none' && this.opts.compression === 'gzip';
  }

  private async computeDescriptor(): Promise<Descriptor> {
    const stored = await this.stored.get();
    if (!this.willCompress(stored)) {
      const mediaType = layerMediaType(this.opts.format, stored);
      // The archive already names these bytes (an uncompressed layer by its diff_id, a crane
      // layer by its file name): trust it as an OCI layout's descriptors are trusted. Every
      // open() checks the bytes against it, so a wrong name fails the push or verify, once.
      const named = stored === 'none' ? this.diffId : craneDigest(this.member);
      if (named) return { mediaType, size: this.tree.size(this.member)!, digest: named };
      const { digest, size } = await hashFile(this.tree, this.member);
      return { mediaType, size, digest };
    }
    const mediaType = layerMediaType(this.opts.format, 'gzip');
    const key = settingsKey(DEFAULT_GZIP_SETTINGS);
    if (this.diffId && this.opts.cache) {
      const hit = await this.opts.cache.get(this.diffId, key);
      if (hit) return { mediaType, size: hit.size, digest: hit.digest };
    }
    this.opts.reporter?.debug(`compressing layer ${this.member} to learn its digest${this.opts.spoolDir ? ' (kept for upload)' : ''}`);
    const progress = this.opts.reporter?.start(this.diffId?.slice(7, 19) ?? this.member, 'compressing', this.tree.size(this.member));
    const input = this.tree.open(this.member);
    if (progress) input.on('data', (chunk: Buffer) => progress.advance(chunk.length));
    let result: { digest: Digest; size: number; diffId: Digest };
    try {
      result = this.opts.spoolDir ? await this.compressToSpool(this.opts.spoolDir, input) : await gzipDescribe(input);
    } catch (e) {
      progress?.fail();
      throw e;
    }
    progress?.done(`compressed to ${result.digest.slice(7, 19)}`);
    if (this.diffId && result.diffId !== this.diffId) {
      throw inputError(this.tree.where, `layer ${this.member} has diff_id ${result.diffId} but the config says ${this.diffId}`);
    }
    await this.opts.cache?.put(result.diffId, key, { digest: result.digest, size: result.size });
    return { mediaType, size: result.size, digest: result.digest };
  }

  private async compressToSpool(dir: string, input: Readable): Promise<{ digest: Digest; size: number; diffId: Digest }> {
    const path = createTempPath(dir, 'layer-');
    const inputHash = createHash('sha256');
    const tapInput = new Transform({
      transform(chunk: Buffer, _e, cb) {
        inputHash.update(chunk);
        cb(null, chunk);
      },
    });
    const output = new DigestingStream();
    try {
      await pipeline(input, tapInput, createGzipStream(), output, createWriteStream(path));
    } catch (e) {
      await releaseTemp(path);
      throw e;
    }
    this.spool = path;
    return { digest: output.digest, size: output.size, diffId: `sha256:${inputHash.digest('hex')}` };
  }

  async open(): Promise<Readable> {
    const desc = await this.describe();
    const stored = await this.stored.get();
    let raw: Readable;
    if (this.spool) raw = createReadStream(this.spool);
    else if (this.willCompress(stored)) {
      this.opts.reporter?.debug(`compressing layer ${this.member} while sending it (digest known from the cache)`);
      raw = this.tree.open(this.member).pipe(createGzipStream());
    }
    else raw = this.tree.open(this.member);
    const verified = verifyStream(desc, `${this.tree.where}: ${this.member}`);
    raw.on('error', (e) => verified.destroy(e));
    return raw.pipe(verified);
  }

  /** Removes the spool file, if any; a later open() compresses again on the fly. */
  async release(): Promise<void> {
    if (this.spool) await releaseTemp(this.spool);
    this.spool = undefined;
  }
}

/** A small blob whose bytes are read from the archive (image configs). */
export class MemberBlob implements Content {
  private readonly bytes: Lazy<Buffer>;
  constructor(
    tree: FileTree,
    readonly member: string,
    private readonly mediaType: string,
  ) {
    this.bytes = new Lazy(() => tree.read(member));
  }
  async describe(): Promise<Descriptor> {
    const b = await this.bytes.get();
    return { mediaType: this.mediaType, size: b.length, digest: sha256(b) };
  }
  async open(): Promise<Readable> {
    return Readable.from([await this.bytes.get()]);
  }
  read(): Promise<Buffer> {
    return this.bytes.get();
  }
  async children(): Promise<Content[]> {
    return [];
  }
}

/** A layer the archive does not contain (foreign / non-distributable): described, never uploaded. */
export class ForeignLayer implements Content {
  constructor(
    private readonly desc: Descriptor,
    private readonly where: string,
  ) {}
  async describe(): Promise<Descriptor> {
    return this.desc;
  }
  async open(): Promise<Readable> {
    throw inputError(this.where, `layer ${this.desc.digest} is foreign (${this.desc.mediaType}) and not in the archive`);
  }
  async children(): Promise<Content[]> {
    return [];
  }
}

export function isForeign(desc: Descriptor): boolean {
  return desc.mediaType.includes('foreign') || desc.mediaType.includes('nondistributable');
}

/** The manifest tarpush builds; its bytes follow crane's serialisation exactly. */
export class SynthesisedManifest implements Content {
  private readonly built: Lazy<{ desc: Descriptor; bytes: Buffer }>;
  constructor(
    readonly config: MemberBlob,
    readonly layers: Content[],
    private readonly format: ManifestFormat,
    /** Layers described at once; compression itself already spreads over all cores. */
    private readonly concurrency = 2,
  ) {
    this.built = new Lazy(() => this.build());
  }

  private async build(): Promise<{ desc: Descriptor; bytes: Buffer }> {
    const configDesc = await this.config.describe();
    const layerDescs = await mapLimit(this.layers, this.concurrency, (l) => l.describe());
    const mediaType = this.format === 'docker' ? MediaType.dockerManifest : MediaType.ociManifest;
    const bytes = serialiseManifest({ mediaType, config: configDesc, layers: layerDescs });
    return { desc: { mediaType, size: bytes.length, digest: sha256(bytes) }, bytes };
  }

  async describe(): Promise<Descriptor> {
    return (await this.built.get()).desc;
  }
  async open(): Promise<Readable> {
    return Readable.from([(await this.built.get()).bytes]);
  }
  async children(): Promise<Content[]> {
    return [this.config, ...this.layers];
  }
}

