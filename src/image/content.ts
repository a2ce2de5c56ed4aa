import type { Readable } from 'node:stream';
import { TarpushError } from '../errors.js';
import type { Descriptor } from './descriptor.js';
import { verifyStream } from './digest.js';
import { parseDocument, type ParsedDocument } from './manifest.js';
import { isManifestOrIndexType } from './mediatypes.js';

/**
 * The image model every reader produces and every writer consumes: a graph of content-addressed
 * nodes. An index's children are its manifests; a manifest's children are its config and layers;
 * blobs have none. Copy, digest and verify all walk this one graph.
 */
export interface Content {
  /**
   * The node's descriptor. Usually known up front; for layers tarpush must compress itself it is
   * computed on first call (from the compression cache when it can), then remembered.
   */
  describe(): Promise<Descriptor>;
  /** The node's bytes, verified against describe() as they stream. */
  open(): Promise<Readable>;
  /** Children in push order (config before layers); empty for plain blobs. */
  children(): Promise<Content[]>;
  /** The descriptor when it is known without any work (no compression, no reads). */
  known?(): Descriptor | undefined;
  /** Frees temporary resources (a spooled compressed layer); the node stays usable. */
  release?(): Promise<void>;
}

/** What a format reader implements: raw bytes of a blob it holds, by descriptor. */
export interface BlobReader {
  /** A human-readable name for errors, e.g. the archive path or registry repository. */
  readonly where: string;
  /** Raw, unverified bytes of the blob; contentFromDescriptor adds the verification. */
  openRaw(desc: Descriptor): Promise<Readable>;
}

/** The most bytes tarpush reads into memory for one manifest, index or config. */
export const MAX_DOCUMENT_BYTES = 16 * 1024 * 1024;

export async function readAll(stream: Readable, limit = MAX_DOCUMENT_BYTES, where = 'stream'): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of stream) {
    total += (chunk as Buffer).length;
    if (total > limit) {
      stream.destroy();
      throw new TarpushError('input', `${where}: larger than ${limit} bytes, refusing to read it into memory`);
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

/** Reads a node whole (manifests, indexes, configs only: bounded by MAX_DOCUMENT_BYTES). */
export async function readContent(content: Content, where?: string): Promise<Buffer> {
  const desc = await content.describe();
  return readAll(await content.open(), MAX_DOCUMENT_BYTES, where ?? desc.digest);
}

/**
 * The generic node for content that already has a descriptor (everything in OCI layouts, Docker
 * 25+ archives and registries). Manifests and indexes are parsed once, on demand.
 */
export function contentFromDescriptor(desc: Descriptor, reader: BlobReader): DescribedContent {
  return new DescribedContent(desc, reader);
}

export class DescribedContent implements Content {
  private parsed?: Promise<ParsedDocument>;
  constructor(
    readonly descriptor: Descriptor,
    readonly reader: BlobReader,
  ) {}

  async describe(): Promise<Descriptor> {
    return this.descriptor;
  }

  known(): Descriptor {
    return this.descriptor;
  }

  async open(): Promise<Readable> {
    const raw = await this.reader.openRaw(this.descriptor);
    const verified = verifyStream(this.descriptor, this.reader.where);
    raw.on('error', (e) => verified.destroy(e));
    return raw.pipe(verified);
  }

  /** The parsed manifest or index (only for manifest and index media types). */
  document(): Promise<ParsedDocument> {
    this.parsed ??= (async () => {
      const bytes = await readAll(await this.open(), MAX_DOCUMENT_BYTES, `${this.reader.where}: ${this.descriptor.digest}`);
      return parseDocument(bytes, `${this.reader.where}: ${this.descriptor.digest}`, this.descriptor.mediaType);
    })();
    return this.parsed;
  }

  async children(): Promise<Content[]> {
    if (!isManifestOrIndexType(this.descriptor.mediaType)) return [];
    const doc = await this.document();
    const descs = doc.kind === 'index' ? doc.index.manifests : [doc.manifest.config, ...doc.manifest.layers];
    return descs.map((d) => contentFromDescriptor(d, this.reader));
  }
}
