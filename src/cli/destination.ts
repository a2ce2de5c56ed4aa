import { parseReference, usageError, type Reference } from '../index.js';

/** Where push sends an image: a registry repository or a local OCI layout (`oci:DIR[:TAG]`). */
export type Destination = { kind: 'registry'; ref: Reference; text: string } | { kind: 'layout'; dir: string; tag?: string; text: string };

export function parseLayoutDestination(text: string): { dir: string; tag?: string } {
  const rest = text.slice('oci:'.length);
  // oci:DIR:TAG — a tag never contains '/', so the last ':' splits only when what follows is one.
  const colon = rest.lastIndexOf(':');
  if (colon > 0 && !rest.slice(colon + 1).includes('/')) return { dir: rest.slice(0, colon), tag: rest.slice(colon + 1) };
  if (!rest) throw usageError(`invalid destination "${text}": oci: needs a directory`);
  return { dir: rest };
}

export function parseDestination(text: string): Destination {
  if (text.startsWith('oci:')) return { kind: 'layout', ...parseLayoutDestination(text), text };
  return { kind: 'registry', ref: parseReference(text), text };
}

/**
 * For `push --all`: DEST is a registry or registry/prefix, and each image keeps its repository
 * path and tag: docker.io/library/alpine:3.19 → DEST/library/alpine:3.19.
 */
export function destinationForTag(base: string, tag: string): Reference {
  const source = parseReference(tag);
  if (!source.tag) throw usageError(`image ${tag} has no tag to push under`);
  const trimmed = base.replace(/\/+$/, '');
  return parseReference(`${trimmed}/${source.repository}:${source.tag}`);
}

/** Parses sizes such as 16777216, 16M, 16MiB, 512k. */
export function parseSize(text: string, option: string): number {
  const m = /^(\d+)\s*([kmg]?)(i?b)?$/i.exec(text.trim());
  if (!m) throw usageError(`${option}: invalid size "${text}" (e.g. 16MiB, 8M, 1048576)`);
  const unit = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[m[2]!.toLowerCase() as '' | 'k' | 'm' | 'g'];
  const value = Number(m[1]) * unit;
  if (value <= 0) throw usageError(`${option}: must be more than 0`);
  return value;
}
