/**
 * Benchmark inputs: image archives and layouts of a requested size, written as streams so that
 * generating a multi-GiB image needs no more memory than a few chunks. Content is deterministic
 * for a seed (same bytes on every machine), and mixed like real layers: text, structured binary
 * and incompressible random data in files of varied sizes, every layer a real tar.
 */
import { createCipheriv, createHash, type Hash } from 'node:crypto';
import { once } from 'node:events';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import tar from 'tar-stream';

const KiB = 1024;
const MiB = 1024 * KiB;
/** Fixed timestamps: the same seed must give the same bytes. */
const EPOCH = new Date(0);
const CHUNK = 256 * KiB;

/** mulberry32, 32-bit integer arithmetic only, so identical everywhere. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

type FileKind = 'text' | 'binary' | 'random';

export interface FileSpec {
  name: string;
  size: number;
  kind: FileKind;
  seed: number;
}

/**
 * The files of one layer, about `size` bytes in all: mostly small files plus a few large ones,
 * by bytes roughly 40% text, 35% structured binary, 25% random (gzip -6 makes about half of it).
 */
export function layerFiles(size: number, seed: number): FileSpec[] {
  const rand = prng(seed);
  const files: FileSpec[] = [];
  let total = 0;
  let i = 0;
  while (total < size) {
    const big = rand() % 10 === 0;
    const want = big ? 1 * MiB + (rand() % (8 * MiB)) : 1 + (rand() % (64 * KiB));
    const n = Math.min(want, size - total);
    const r = rand() % 100;
    const kind: FileKind = r < 40 ? 'text' : r < 75 ? 'binary' : 'random';
    const dir = `usr/lib/bench${seed % 1000}/d${Math.floor(i / 200)}`;
    files.push({ name: `${dir}/f${i}.${kind === 'text' ? 'txt' : 'bin'}`, size: n, kind, seed: rand() });
    total += n;
    i++;
  }
  return files;
}

function dirsOf(files: FileSpec[]): string[] {
  const dirs = new Set<string>();
  for (const f of files) {
    const parts = f.name.split('/');
    for (let k = 1; k < parts.length; k++) dirs.add(parts.slice(0, k).join('/'));
  }
  return [...dirs];
}

/** The exact size of the tar tarLayer() writes for these files (ustar headers, no pax: short names). */
export function layerTarSize(files: FileSpec[]): number {
  let size = dirsOf(files).length * 512;
  for (const f of files) size += 512 + Math.ceil(f.size / 512) * 512;
  return size + 1024;
}

const WORDS: Buffer[] = (() => {
  const rand = prng(424242);
  const letters = 'etaoinshrdlcumwfgypbvkjxqz';
  const words: Buffer[] = [];
  for (let i = 0; i < 3000; i++) {
    const len = 2 + (rand() % 9);
    let w = '';
    for (let k = 0; k < len; k++) w += letters[Math.min(rand() % 26, rand() % 26)];
    words.push(Buffer.from(w, 'latin1'));
  }
  return words;
})();

/** Streams one file's bytes in CHUNK-sized pieces. */
function* fileContent(f: FileSpec): Generator<Buffer> {
  const rand = prng(f.seed);
  if (f.kind === 'random') {
    // AES-CTR keystream: deterministic for the seed, and far faster than a JS PRNG byte by byte.
    const key = createHash('sha256').update(`bench-${f.seed}`).digest().subarray(0, 16);
    const cipher = createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
    const zeros = Buffer.alloc(CHUNK);
    for (let left = f.size; left > 0; left -= CHUNK) yield cipher.update(zeros.subarray(0, Math.min(CHUNK, left)));
    return;
  }
  for (let left = f.size; left > 0; ) {
    const n = Math.min(CHUNK, left);
    const buf = Buffer.allocUnsafe(n);
    let pos = 0;
    if (f.kind === 'text') {
      // Zipf-ish word choice with frequent short lines: compresses like source code and docs.
      while (pos < n) {
        const w = WORDS[Math.min(rand() % WORDS.length, rand() % WORDS.length, rand() % WORDS.length)]!;
        pos += w.copy(buf, pos);
        if (pos < n) buf[pos++] = rand() % 9 === 0 ? 0x0a : 0x20;
      }
    } else {
      // Records like symbol or relocation tables: counters, small enums, aligned pointers, padding.
      let counter = rand();
      const base = rand() & 0xfff00000;
      for (; pos + 16 <= n; pos += 16) {
        counter = (counter + 1 + (rand() & 3)) >>> 0;
        buf.writeUInt32LE(counter, pos);
        buf.writeUInt32LE(rand() & 0x1f, pos + 4);
        buf.writeUInt32LE((base + (rand() & 0xffff) * 8) >>> 0, pos + 8);
        buf.writeUInt32LE(0, pos + 12);
      }
      buf.fill(0, pos);
      pos = n;
    }
    left -= n;
    yield buf;
  }
}

/** What both Node and streamx (tar-stream) writables offer. */
interface ByteSink {
  write(chunk: Buffer): boolean;
  end(): unknown;
  once(event: 'drain', listener: () => void): unknown;
}

async function writeAll(w: ByteSink, chunk: Buffer): Promise<void> {
  if (!w.write(chunk)) await new Promise<void>((resolve) => w.once('drain', resolve));
}

type EntryHeader = Partial<tar.Header> & { name: string };

function entryDone(pack: tar.Pack, header: EntryHeader, body?: Buffer): { stream: ByteSink; done: Promise<void> } {
  let stream!: ByteSink;
  const done = new Promise<void>((resolve, reject) => {
    const cb = (err?: Error | null) => (err ? reject(err) : resolve());
    stream = (body ? pack.entry(header, body, cb) : pack.entry(header, cb)) as unknown as ByteSink;
  });
  return { stream, done };
}

/** A layer tar as a stream, with its size known up front (needed for the outer tar's header). */
export function tarLayer(files: FileSpec[]): { size: number; stream: AsyncIterable<Buffer> } {
  const pack = tar.pack();
  const size = layerTarSize(files);
  (async () => {
    for (const d of dirsOf(files)) {
      await entryDone(pack, { name: d, type: 'directory', mode: 0o755, mtime: EPOCH }).done;
    }
    for (const f of files) {
      const { stream, done } = entryDone(pack, { name: f.name, size: f.size, mode: 0o644, mtime: EPOCH });
      for (const chunk of fileContent(f)) await writeAll(stream, chunk);
      stream.end();
      await done;
    }
    pack.finalize();
  })().catch((e: unknown) => pack.destroy(e as Error));
  // streamx readables are async-iterable at run time; its typings just do not say so.
  return { size, stream: pack as unknown as AsyncIterable<Buffer> };
}

/** Copies `src` into `dst` (without ending it), hashing and counting on the way. */
async function copyHashed(src: AsyncIterable<Buffer>, dst: ByteSink, hash: Hash): Promise<number> {
  let n = 0;
  for await (const chunk of src) {
    hash.update(chunk as Buffer);
    n += (chunk as Buffer).length;
    await writeAll(dst, chunk as Buffer);
  }
  return n;
}

export interface GenerateOptions {
  /** Total uncompressed layer bytes. */
  totalSize: number;
  /** Number of layers (default 5, of decreasing size). */
  layers?: number;
  seed?: number;
  /** e.g. `bench/app:latest` */
  repoTag?: string;
  /**
   * Docker archives only: store each layer member gzipped (as some tools do), so the archive's
   * layers need hashing but no compression. Default false (what `docker save` writes).
   */
  gzipLayers?: boolean;
}

export interface GeneratedLayer {
  diffId: string;
  size: number;
  /** For OCI layouts: the gzip blob. */
  digest?: string;
  compressedSize?: number;
}

export interface GeneratedImage {
  path: string;
  configDigest: string;
  layers: GeneratedLayer[];
}

/** Layer sizes summing to `total`: the first (base) layer biggest, as in real images. */
function layerSizes(total: number, count: number): number[] {
  const weights = Array.from({ length: count }, (_, i) => count - i);
  const sum = weights.reduce((a, b) => a + b, 0);
  const sizes = weights.map((w) => Math.floor((total * w) / sum));
  sizes[0]! += total - sizes.reduce((a, b) => a + b, 0);
  return sizes;
}

function configFor(diffIds: string[]): Buffer {
  const config = {
    architecture: 'amd64',
    os: 'linux',
    created: EPOCH.toISOString(),
    config: { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], Cmd: ['/bin/sh'] },
    rootfs: { type: 'layers', diff_ids: diffIds },
    history: diffIds.map((_, i) => ({ created: EPOCH.toISOString(), created_by: `bench layer ${i}` })),
  };
  return Buffer.from(JSON.stringify(config));
}

const sha256 = (b: Buffer | string) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const hexOf = (d: string) => d.slice('sha256:'.length);

/**
 * A legacy `docker save` archive (Docker < 25): `<id>/layer.tar` uncompressed layers, VERSION
 * and json per layer, `<config hex>.json`, `manifest.json` and `repositories`.
 */
export async function writeDockerArchive(path: string, opts: GenerateOptions): Promise<GeneratedImage> {
  const seed = opts.seed ?? 1;
  const repoTag = opts.repoTag ?? 'bench/app:latest';
  const sizes = layerSizes(opts.totalSize, opts.layers ?? 5);
  const out = createWriteStream(path);
  const pack = tar.pack();
  const closed = new Promise<void>((resolve, reject) => {
    out.on('close', resolve);
    out.on('error', reject);
    pack.on('error', reject);
  });
  pack.pipe(out);
  const layers: GeneratedLayer[] = [];
  const ids: string[] = [];
  try {
    for (let i = 0; i < sizes.length; i++) {
      const id = createHash('sha256').update(`bench-layer-${seed}-${i}`).digest('hex');
      ids.push(id);
      await entryDone(pack, { name: id, type: 'directory', mode: 0o755, mtime: EPOCH }).done;
      await entryDone(pack, { name: `${id}/VERSION`, mode: 0o644, mtime: EPOCH }, Buffer.from('1.0')).done;
      const v1 = { id, ...(i > 0 ? { parent: ids[i - 1] } : {}), created: EPOCH.toISOString() };
      await entryDone(pack, { name: `${id}/json`, mode: 0o644, mtime: EPOCH }, Buffer.from(JSON.stringify(v1))).done;
      const layer = tarLayer(layerFiles(sizes[i]!, seed * 1000 + i));
      if (opts.gzipLayers) {
        // The entry header needs the compressed size, so the layer is compressed to a side file first.
        const tmp = `${path}.layer-${i}.tmp`;
        try {
          const gz = await gzipToFile(layer.stream, tmp);
          const { stream, done } = entryDone(pack, { name: `${id}/layer.tar`, size: gz.compressedSize, mode: 0o644, mtime: EPOCH });
          await copyHashed(createReadStream(tmp), stream, createHash('sha256'));
          stream.end();
          await done;
          layers.push(gz);
        } finally {
          await rm(tmp, { force: true });
        }
        continue;
      }
      const { stream, done } = entryDone(pack, { name: `${id}/layer.tar`, size: layer.size, mode: 0o644, mtime: EPOCH });
      const hash = createHash('sha256');
      const n = await copyHashed(layer.stream, stream, hash);
      stream.end();
      await done;
      layers.push({ diffId: `sha256:${hash.digest('hex')}`, size: n });
    }
    const config = configFor(layers.map((l) => l.diffId));
    const configDigest = sha256(config);
    await entryDone(pack, { name: `${hexOf(configDigest)}.json`, mode: 0o644, mtime: EPOCH }, config).done;
    const manifest = [{ Config: `${hexOf(configDigest)}.json`, RepoTags: [repoTag], Layers: ids.map((id) => `${id}/layer.tar`) }];
    await entryDone(pack, { name: 'manifest.json', mode: 0o644, mtime: EPOCH }, Buffer.from(JSON.stringify(manifest))).done;
    const [repo, tag] = splitTag(repoTag);
    const repositories = { [repo]: { [tag]: ids[ids.length - 1] } };
    await entryDone(pack, { name: 'repositories', mode: 0o644, mtime: EPOCH }, Buffer.from(JSON.stringify(repositories))).done;
    pack.finalize();
    await closed;
    return { path, configDigest, layers };
  } catch (e) {
    pack.destroy(e as Error);
    out.destroy();
    throw e;
  }
}

function splitTag(repoTag: string): [string, string] {
  const i = repoTag.lastIndexOf(':');
  return i > repoTag.lastIndexOf('/') ? [repoTag.slice(0, i), repoTag.slice(i + 1)] : [repoTag, 'latest'];
}

/** Gzips (Node zlib, level 6, as most builders do) a layer tar into `path`, hashing both sides. */
async function gzipToFile(src: AsyncIterable<Buffer>, path: string): Promise<Required<GeneratedLayer>> {
  const file = createWriteStream(path);
  const gzip = createGzip({ level: 6 });
  const diff = createHash('sha256');
  const blob = createHash('sha256');
  let compressedSize = 0;
  gzip.on('data', (c: Buffer) => {
    blob.update(c);
    compressedSize += c.length;
    if (!file.write(c)) {
      gzip.pause();
      file.once('drain', () => gzip.resume());
    }
  });
  const gzEnded = once(gzip, 'end');
  const size = await copyHashed(src, gzip, diff);
  gzip.end();
  await gzEnded;
  file.end();
  await once(file, 'close');
  return { diffId: `sha256:${diff.digest('hex')}`, size, digest: `sha256:${blob.digest('hex')}`, compressedSize };
}

/** An OCI image layout directory with gzip layers (Node zlib, level 6, as most builders produce). */
export async function writeOciLayout(dir: string, opts: GenerateOptions): Promise<GeneratedImage> {
  const seed = opts.seed ?? 1;
  const sizes = layerSizes(opts.totalSize, opts.layers ?? 5);
  const blobs = join(dir, 'blobs', 'sha256');
  await mkdir(blobs, { recursive: true });
  const layers: GeneratedLayer[] = [];
  for (let i = 0; i < sizes.length; i++) {
    const layer = tarLayer(layerFiles(sizes[i]!, seed * 1000 + i));
    const tmp = join(blobs, `.layer-${i}.tmp`);
    const gz = await gzipToFile(layer.stream, tmp);
    await rename(tmp, join(blobs, hexOf(gz.digest)));
    layers.push(gz);
  }
  const config = configFor(layers.map((l) => l.diffId));
  const configDigest = sha256(config);
  await writeFile(join(blobs, hexOf(configDigest)), config);
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: configDigest, size: config.length },
      layers: layers.map((l) => ({
        mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
        digest: l.digest,
        size: l.compressedSize,
      })),
    }),
  );
  const manifestDigest = sha256(manifest);
  await writeFile(join(blobs, hexOf(manifestDigest)), manifest);
  const index = {
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.index.v1+json',
    manifests: [
      {
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        digest: manifestDigest,
        size: manifest.length,
        annotations: { 'org.opencontainers.image.ref.name': splitTag(opts.repoTag ?? 'bench/app:latest')[1] },
      },
    ],
  };
  await writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  await writeFile(join(dir, 'index.json'), JSON.stringify(index));
  return { path: dir, configDigest, layers };
}

/** A gzip copy of a file (Node zlib level 1: only the archive's outer compression, fast to make). */
export async function gzipFile(src: string, dst: string): Promise<void> {
  await pipeline(createReadStream(src), createGzip({ level: 1 }), createWriteStream(dst));
}
