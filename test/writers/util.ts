/**
 * Test helpers shared by the writer and verify tests: tiny images built from scratch (layer tars
 * packed with tar-stream, gzip/zstd compressed, configs with correct diff_ids) and in-memory or
 * directory blob readers, so Content graphs exist without the format readers.
 */
import { execFileSync } from 'node:child_process';
import { createReadStream, createWriteStream, mkdtempSync, readdirSync, rmSync, statSync, readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative, sep } from 'node:path';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import tar from 'tar-stream';
import type { FileTree } from '../../src/archive/filetree.js';
import { contentFromDescriptor, readAll, type BlobReader, type DescribedContent } from '../../src/image/content.js';
import type { Descriptor, Platform } from '../../src/image/descriptor.js';
import { parseDigest, sha256 } from '../../src/image/digest.js';
import { serialiseIndex, serialiseManifest } from '../../src/image/manifest.js';
import { MediaType } from '../../src/image/mediatypes.js';
import type { Target } from '../../src/image/target.js';

export type Compression = 'gzip' | 'zstd' | 'none';

export interface Blob {
  desc: Descriptor;
  bytes: Buffer;
}

export interface Layer extends Blob {
  diffId: string;
}

export interface BuiltImage {
  manifest: Blob;
  config: Blob;
  layers: Layer[];
  /** Every blob of the image (manifest, config, layers) by digest. */
  blobs: Map<string, Buffer>;
}

export interface BuiltIndex {
  index: Blob;
  images: BuiltImage[];
  blobs: Map<string, Buffer>;
}

export async function tarOf(files: Record<string, string | Buffer>): Promise<Buffer> {
  const pack = tar.pack();
  for (const [name, data] of Object.entries(files)) {
    pack.entry({ name, mtime: new Date(0), mode: 0o644 }, typeof data === 'string' ? Buffer.from(data) : data);
  }
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const c of pack) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

export function compress(data: Buffer, compression: Compression): Buffer {
  if (compression === 'gzip') return gzipSync(data);
  if (compression === 'zstd') return execFileSync('zstd', ['-q', '-c', '-3'], { input: data, maxBuffer: 1 << 30 });
  return data;
}

export function descOf(mediaType: string, bytes: Buffer, extra: Partial<Descriptor> = {}): Descriptor {
  return { mediaType, size: bytes.length, digest: sha256(bytes), ...extra };
}

export async function makeLayer(
  files: Record<string, string | Buffer>,
  compression: Compression = 'gzip',
  format: 'oci' | 'docker' = 'oci',
): Promise<Layer> {
  const raw = await tarOf(files);
  const bytes = compress(raw, compression);
  const mediaType =
    format === 'docker'
      ? { gzip: MediaType.dockerLayerGzip, zstd: MediaType.dockerLayerZstd, none: MediaType.dockerLayer }[compression]
      : { gzip: MediaType.ociLayerGzip, zstd: MediaType.ociLayerZstd, none: MediaType.ociLayer }[compression];
  return { desc: descOf(mediaType, bytes), bytes, diffId: sha256(raw) };
}

export interface ImageOptions {
  platform?: Platform;
  format?: 'oci' | 'docker';
  /** Overrides the config's diff_ids (to build broken images). */
  diffIds?: string[];
  /** Extra config fields, to make two images' configs differ. */
  label?: string;
}

export function makeImage(layers: Layer[], opts: ImageOptions = {}): BuiltImage {
  const format = opts.format ?? 'oci';
  const platform = opts.platform ?? { os: 'linux', architecture: 'amd64' };
  const configJson = {
    architecture: platform.architecture,
    os: platform.os,
    ...(platform.variant ? { variant: platform.variant } : {}),
    config: opts.label ? { Labels: { test: opts.label } } : {},
    rootfs: { type: 'layers', diff_ids: opts.diffIds ?? layers.map((l) => l.diffId) },
    history: layers.map(() => ({ created_by: 'test' })),
  };
  const configBytes = Buffer.from(JSON.stringify(configJson));
  const config = { desc: descOf(format === 'docker' ? MediaType.dockerConfig : MediaType.ociConfig, configBytes), bytes: configBytes };
  const manifestBytes = serialiseManifest({
    mediaType: format === 'docker' ? MediaType.dockerManifest : MediaType.ociManifest,
    config: config.desc,
    layers: layers.map((l) => l.desc),
  });
  const manifest = {
    desc: descOf(format === 'docker' ? MediaType.dockerManifest : MediaType.ociManifest, manifestBytes),
    bytes: manifestBytes,
  };
  const blobs = new Map<string, Buffer>();
  blobs.set(manifest.desc.digest, manifest.bytes);
  blobs.set(config.desc.digest, config.bytes);
  for (const l of layers) blobs.set(l.desc.digest, l.bytes);
  return { manifest, config, layers, blobs };
}

export function makeIndex(images: BuiltImage[]): BuiltIndex {
  const manifests = images.map((img) => ({ ...img.manifest.desc, platform: platformOf(img) }));
  const bytes = serialiseIndex(manifests);
  const index = { desc: descOf(MediaType.ociIndex, bytes), bytes };
  const blobs = new Map<string, Buffer>([[index.desc.digest, bytes]]);
  for (const img of images) for (const [d, b] of img.blobs) blobs.set(d, b);
  return { index, images, blobs };
}

function platformOf(img: BuiltImage): Platform {
  const c = JSON.parse(img.config.bytes.toString()) as { os: string; architecture: string; variant?: string };
  return { architecture: c.architecture, os: c.os, ...(c.variant ? { variant: c.variant } : {}) };
}

/** Blobs held in memory, served in chunks so consumers see a real stream. */
export class MemoryBlobReader implements BlobReader {
  constructor(
    readonly blobs: Map<string, Buffer>,
    readonly where = 'memory',
  ) {}
  async openRaw(desc: Descriptor): Promise<Readable> {
    const b = this.blobs.get(desc.digest);
    if (!b) throw new Error(`${this.where}: blob ${desc.digest} is missing`);
    return Readable.from(chunks(b, 7000));
  }
}

function* chunks(b: Buffer, size: number): Generator<Buffer> {
  for (let i = 0; i < b.length; i += size) yield b.subarray(i, i + size);
  if (b.length === 0) return;
}

export function memoryContent(desc: Descriptor, blobs: Map<string, Buffer>): DescribedContent {
  return contentFromDescriptor(desc, new MemoryBlobReader(blobs));
}

/** A directory FileTree (enough of one for the verify tests). */
export class DirTree implements FileTree {
  readonly kind = 'directory' as const;
  readonly compression = 'none' as const;
  constructor(readonly root: string) {}
  get where(): string {
    return this.root;
  }
  files(): string[] {
    const out: string[] = [];
    const walk = (dir: string): void => {
      for (const e of readdirSync(dir, { withFileTypes: true })) {
        const p = join(dir, e.name);
        if (e.isDirectory()) walk(p);
        else if (e.isFile()) out.push(relative(this.root, p).split(sep).join('/'));
      }
    };
    walk(this.root);
    return out.sort();
  }
  has(name: string): boolean {
    return this.size(name) !== undefined;
  }
  size(name: string): number | undefined {
    try {
      const s = statSync(join(this.root, name));
      return s.isFile() ? s.size : undefined;
    } catch {
      return undefined;
    }
  }
  open(name: string, range?: { start: number; end: number }): Readable {
    return createReadStream(join(this.root, name), range ? { start: range.start, end: range.end - 1 } : {});
  }
  async read(name: string, limit = 16 << 20): Promise<Buffer> {
    return readAll(this.open(name), limit, name);
  }
  async close(): Promise<void> {}
}

/** Reads blobs of a layout directory by content address. */
export class DirBlobReader implements BlobReader {
  constructor(readonly root: string) {}
  get where(): string {
    return this.root;
  }
  async openRaw(desc: Descriptor): Promise<Readable> {
    const { algorithm, hex } = parseDigest(desc.digest);
    const path = join(this.root, 'blobs', algorithm, hex);
    try {
      statSync(path);
    } catch {
      throw new Error(`${this.root}: blob ${desc.digest} is missing`);
    }
    return createReadStream(path);
  }
}

/** Writes a layout directory by hand (independent of the writer under test). */
export async function writeLayoutByHand(dir: string, roots: Descriptor[], blobs: Map<string, Buffer>): Promise<void> {
  await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true });
  await writeFile(join(dir, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  await writeFile(join(dir, 'index.json'), serialiseIndex(roots));
  for (const [digest, bytes] of blobs) await writeFile(join(dir, 'blobs', 'sha256', parseDigest(digest).hex), bytes);
}

/** Copies an image (or index) into a Target the way copy.ts does: blobs, children first, root last. */
export async function pushImage(target: Target, img: BuiltImage, tag?: string): Promise<void> {
  const blobs = img.blobs;
  const open = (d: Descriptor) => () => memoryContent(d, blobs).open();
  await Promise.all([img.config, ...img.layers].map((b) => target.putBlob(b.desc, open(b.desc))));
  await target.putManifest(img.manifest.desc, img.manifest.bytes, tag);
}

export async function pushIndex(target: Target, idx: BuiltIndex, tag?: string): Promise<void> {
  for (const img of idx.images) await pushImage(target, img);
  await target.putManifest(idx.index.desc, idx.index.bytes, tag);
}

export function tempDir(prefix = 'tarpush-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

export function blobPath(dir: string, digest: string): string {
  const { algorithm, hex } = parseDigest(digest);
  return join(dir, 'blobs', algorithm, hex);
}

export function readJson(path: string): any {
  return JSON.parse(readFileSync(path, 'utf8'));
}

/** Writes `size` pseudo-random bytes to a file without holding them all in memory. */
export async function writeRandomFile(path: string, size: number): Promise<void> {
  const out = createWriteStream(path);
  let left = size;
  let seed = 12345;
  const block = Buffer.alloc(1 << 20);
  while (left > 0) {
    for (let i = 0; i < block.length; i += 4) {
      seed = (seed * 1103515245 + 12345) >>> 0;
      block.writeUInt32LE(seed, i);
    }
    const n = Math.min(left, block.length);
    if (!out.write(Buffer.from(block.subarray(0, n)))) await new Promise<void>((r) => out.once('drain', () => r()));
    left -= n;
  }
  await new Promise<void>((resolve, reject) => out.end((e?: Error | null) => (e ? reject(e) : resolve())));
}
