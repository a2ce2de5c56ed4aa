import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { contentFromDescriptor, readContent, type BlobReader, type Content } from '../../src/image/content.js';
import type { Descriptor } from '../../src/image/descriptor.js';
import { sha256 } from '../../src/image/digest.js';
import { MediaType, isManifestOrIndexType } from '../../src/image/mediatypes.js';
import type { Progress, ProgressReporter } from '../../src/progress/progress.js';
import type { Target } from '../../src/image/target.js';

/** An in-memory BlobReader over a map of digest → bytes, counting opens. */
export class MemoryReader implements BlobReader {
  readonly where = 'memory';
  readonly blobs = new Map<string, Buffer>();
  opens = 0;
  /** Digest → replacement bytes served instead of the real ones (to test mismatches). */
  readonly tampered = new Map<string, Buffer>();
  add(data: Buffer): string {
    const d = sha256(data);
    this.blobs.set(d, data);
    return d;
  }
  async openRaw(desc: Descriptor): Promise<Readable> {
    this.opens++;
    const data = this.tampered.get(desc.digest) ?? this.blobs.get(desc.digest);
    if (!data) throw new Error(`no blob ${desc.digest}`);
    // Small pieces, like a file read, so chunking code sees many chunks.
    const pieces: Buffer[] = [];
    for (let i = 0; i < data.length; i += 8192) pieces.push(data.subarray(i, i + 8192));
    return Readable.from(pieces);
  }
}

export interface TestImage {
  reader: MemoryReader;
  root: Content;
  manifest: Buffer;
  manifestDesc: Descriptor;
  config: Buffer;
  layers: Buffer[];
}

/** A small OCI image: config plus layers of the given sizes (random bytes). */
export function makeImage(layerSizes: number[], label = 'test'): TestImage {
  const reader = new MemoryReader();
  const layers = layerSizes.map((n) => randomBytes(n));
  const layerDescs = layers.map((l) => ({ mediaType: MediaType.ociLayer, size: l.length, digest: reader.add(l) }));
  const config = Buffer.from(
    JSON.stringify({ architecture: 'amd64', os: 'linux', config: { Labels: { label } }, rootfs: { type: 'layers', diff_ids: layerDescs.map((d) => d.digest) } }),
  );
  const configDesc = { mediaType: MediaType.ociConfig, size: config.length, digest: reader.add(config) };
  const manifest = Buffer.from(
    JSON.stringify({ schemaVersion: 2, mediaType: MediaType.ociManifest, config: configDesc, layers: layerDescs }),
  );
  const manifestDesc = { mediaType: MediaType.ociManifest, size: manifest.length, digest: reader.add(manifest) };
  return { reader, root: contentFromDescriptor(manifestDesc, reader), manifest, manifestDesc, config, layers };
}

/** The copy the lead's copy.ts does, reduced to what these tests need: children first, root last. */
export async function pushGraph(root: Content, target: Target, tag?: string, progress?: (d: Descriptor) => Progress | undefined): Promise<void> {
  const walk = async (node: Content, rootTag?: string): Promise<void> => {
    const desc = await node.describe();
    if (await target.exists(desc)) {
      if (rootTag === undefined) return;
    }
    for (const child of await node.children()) await walk(child);
    if (isManifestOrIndexType(desc.mediaType)) {
      await target.putManifest(desc, await readContent(node), rootTag);
    } else if (!(await target.exists(desc))) {
      await target.putBlob(desc, () => node.open(), progress?.(desc));
    }
  };
  await walk(root, tag);
}

/** A reporter that keeps every line it is given, to check nothing secret is printed. */
export function capturingReporter(): ProgressReporter & { lines: string[] } {
  const lines: string[] = [];
  const progress = (id: string): Progress => ({
    advance: (n) => lines.push(`${id} +${n}`),
    reset: (n) => lines.push(`${id} reset ${n ?? 0}`),
    done: (note) => lines.push(`${id} done ${note ?? ''}`),
    fail: (note) => lines.push(`${id} fail ${note ?? ''}`),
  });
  return {
    lines,
    start: (id, label, total) => {
      lines.push(`start ${id} ${label} ${total ?? ''}`);
      return progress(id);
    },
    info: (m) => lines.push(`info ${m}`),
    debug: (m) => lines.push(`debug ${m}`),
    close: () => {},
  };
}

/** Records advance/reset calls. */
export class RecordingProgress implements Progress {
  sent = 0;
  resets: number[] = [];
  advance(n: number): void {
    this.sent += n;
  }
  reset(n?: number): void {
    this.resets.push(n ?? 0);
    this.sent = n ?? 0;
  }
  done(): void {}
  fail(): void {}
}

export async function tempDir(prefix = 'tarpush-reg-'): Promise<{ path: string; remove(): Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), prefix));
  return { path, remove: () => rm(path, { recursive: true, force: true }) };
}
