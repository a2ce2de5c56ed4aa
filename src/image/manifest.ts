import { TarpushError } from '../errors.js';
import { isDigest } from './digest.js';
import type { Descriptor, ImageConfig, ImageIndex, ImageManifest, Platform } from './descriptor.js';
import { MediaType, isIndexType, isManifestType } from './mediatypes.js';

/**
 * Parsing and serialising of manifests and indexes. Parsing is strict about what tarpush relies
 * on (digests, sizes, media types) and lenient about everything else, because real archives
 * carry extra fields that must survive untouched: manifests are always pushed as their original
 * bytes, never re-serialised.
 */

export type ParsedDocument =
  | { kind: 'manifest'; mediaType: string; manifest: ImageManifest }
  | { kind: 'index'; mediaType: string; index: ImageIndex };

function bad(where: string, problem: string): TarpushError {
  return new TarpushError('input', `${where}: ${problem}`);
}

export function parseJson(bytes: Buffer | string, where: string): unknown {
  const text = typeof bytes === 'string' ? bytes : bytes.toString('utf8');
  if (text.trim() === '') throw bad(where, 'is empty');
  try {
    return JSON.parse(text);
  } catch (e) {
    throw bad(where, `is not valid JSON (${(e as Error).message})`);
  }
}

export function checkDescriptor(value: unknown, where: string): Descriptor {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw bad(where, 'descriptor is not an object');
  }
  const d = value as Record<string, unknown>;
  if (typeof d.mediaType !== 'string' || d.mediaType === '') throw bad(where, 'descriptor has no mediaType');
  if (!isDigest(d.digest)) throw bad(where, `descriptor has an invalid digest ${JSON.stringify(d.digest)}`);
  if (typeof d.size !== 'number' || !Number.isSafeInteger(d.size) || d.size < 0) {
    throw bad(where, `descriptor ${d.digest} has an invalid size ${JSON.stringify(d.size)}`);
  }
  return value as Descriptor;
}

/**
 * Parses a manifest or index. `declared` is the media type of the descriptor that pointed at it,
 * which wins over the document's own (absent in many OCI documents).
 */
export function parseDocument(bytes: Buffer, where: string, declared?: string): ParsedDocument {
  const json = parseJson(bytes, where);
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw bad(where, 'is not a JSON object');
  }
  const doc = json as Record<string, unknown>;
  const own = typeof doc.mediaType === 'string' ? doc.mediaType : undefined;
  let mediaType = declared && (isIndexType(declared) || isManifestType(declared)) ? declared : own;
  if (!mediaType) {
    if (Array.isArray(doc.manifests)) mediaType = MediaType.ociIndex;
    else if (doc.config !== undefined) mediaType = MediaType.ociManifest;
  }
  if (doc.schemaVersion !== 2) {
    throw bad(where, `unsupported schemaVersion ${JSON.stringify(doc.schemaVersion)} (only 2 is supported)`);
  }
  if (isIndexType(mediaType)) {
    if (!Array.isArray(doc.manifests)) throw bad(where, 'index has no "manifests" list');
    doc.manifests.forEach((m, i) => checkDescriptor(m, `${where}: manifests[${i}]`));
    return { kind: 'index', mediaType: mediaType!, index: doc as unknown as ImageIndex };
  }
  if (isManifestType(mediaType)) {
    checkDescriptor(doc.config, `${where}: config`);
    if (!Array.isArray(doc.layers)) throw bad(where, 'manifest has no "layers" list');
    doc.layers.forEach((l, i) => checkDescriptor(l, `${where}: layers[${i}]`));
    return { kind: 'manifest', mediaType: mediaType!, manifest: doc as unknown as ImageManifest };
  }
  throw bad(where, `unknown manifest media type ${JSON.stringify(mediaType ?? null)}`);
}

export function parseConfig(bytes: Buffer, where: string): ImageConfig {
  const json = parseJson(bytes, where);
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw bad(where, 'image config is not a JSON object');
  }
  return json as ImageConfig;
}

export function platformOfConfig(config: ImageConfig): Platform | undefined {
  if (typeof config.os !== 'string' || typeof config.architecture !== 'string') return undefined;
  const p: Platform = { architecture: config.architecture, os: config.os };
  if (typeof config.variant === 'string' && config.variant) p.variant = config.variant;
  if (typeof config['os.version'] === 'string' && config['os.version']) p['os.version'] = config['os.version'];
  return p;
}

/**
 * JSON exactly as Go's encoding/json writes it (no whitespace, HTML-sensitive characters
 * escaped), so manifests tarpush synthesises hash to the same digest crane's do.
 */
export function goJson(value: unknown): string {
  return JSON.stringify(value).replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

function orderedDescriptor(d: Descriptor): Descriptor {
  // Field order of go-containerregistry's v1.Descriptor.
  const out: Descriptor = { mediaType: d.mediaType, size: d.size, digest: d.digest };
  if (d.urls?.length) out.urls = d.urls;
  if (d.annotations && Object.keys(d.annotations).length) out.annotations = d.annotations;
  if (d.platform) out.platform = d.platform;
  if (d.artifactType) out.artifactType = d.artifactType;
  return out;
}

/** Serialises a synthesised image manifest in crane's field order. */
export function serialiseManifest(m: { mediaType: string; config: Descriptor; layers: Descriptor[] }): Buffer {
  return Buffer.from(
    goJson({
      schemaVersion: 2,
      mediaType: m.mediaType,
      config: orderedDescriptor(m.config),
      layers: m.layers.map(orderedDescriptor),
    }),
    'utf8',
  );
}

/** Serialises an index (for layouts and archives tarpush writes). */
export function serialiseIndex(manifests: Descriptor[], mediaType: string = MediaType.ociIndex): Buffer {
  return Buffer.from(goJson({ schemaVersion: 2, mediaType, manifests: manifests.map(orderedDescriptor) }), 'utf8');
}
