import { readContent, type Content } from '../image/content.js';
import type { Descriptor, ImageConfig } from '../image/descriptor.js';
import { parseConfig, parseDocument, type ParsedDocument } from '../image/manifest.js';
import { formatPlatform } from '../image/platform.js';
import { describeFailure } from './errors.js';

export interface Comparison {
  same: boolean;
  /** One line per difference, most significant first; empty when `same`. */
  differences: string[];
}

/**
 * Compares two images (say, the local input and what the registry now holds). Equal digests mean
 * equal images; otherwise it explains what differs: media types, platforms of an index, config,
 * and which layers (by position, digest and size).
 */
export async function compareImages(local: Content, remote: Content): Promise<Comparison> {
  const differences: string[] = [];
  await compareNodes(local, remote, '', differences);
  return { same: differences.length === 0, differences };
}

async function compareNodes(local: Content, remote: Content, prefix: string, out: string[]): Promise<void> {
  const [l, r] = await Promise.all([local.describe(), remote.describe()]);
  if (l.digest === r.digest) return;
  out.push(`${prefix}digest: local ${l.digest} (${l.size} bytes), remote ${r.digest} (${r.size} bytes)`);
  if (l.mediaType !== r.mediaType) out.push(`${prefix}media type: local ${l.mediaType}, remote ${r.mediaType}`);
  const [ld, rd] = await Promise.all([readDocument(local, l, 'local', prefix, out), readDocument(remote, r, 'remote', prefix, out)]);
  if (!ld || !rd) return;
  if (ld.kind === 'index' && rd.kind === 'index') {
    await compareIndexes(local, remote, ld, rd, prefix, out);
    return;
  }
  if (ld.kind === 'manifest' && rd.kind === 'manifest') {
    await compareManifests(local, remote, ld, rd, prefix, out);
    return;
  }
  const [index, manifest, indexSide] = ld.kind === 'index' ? [ld, r, 'local'] : [rd as ParsedDocument & { kind: 'index' }, l, 'remote'];
  const other = indexSide === 'local' ? 'remote' : 'local';
  const entry = (index as ParsedDocument & { kind: 'index' }).index.manifests.find((m) => m.digest === manifest.digest);
  out.push(
    `${prefix}${indexSide} is an index, ${other} is a single image manifest` +
      (entry ? ` (the ${other} manifest is the index's ${formatPlatform(entry.platform) || 'entry'} manifest)` : ''),
  );
}

async function compareIndexes(
  local: Content,
  remote: Content,
  ld: ParsedDocument & { kind: 'index' },
  rd: ParsedDocument & { kind: 'index' },
  prefix: string,
  out: string[],
): Promise<void> {
  const [lc, rc] = await Promise.all([local.children(), remote.children()]);
  const lk = platformKeys(ld.index.manifests);
  const rk = platformKeys(rd.index.manifests);
  const before = out.length;
  for (const [key, i] of lk) {
    if (!rk.has(key)) out.push(`${prefix}${key}: only in local (${ld.index.manifests[i]!.digest})`);
  }
  for (const [key, j] of rk) {
    if (!lk.has(key)) out.push(`${prefix}${key}: only in remote (${rd.index.manifests[j]!.digest})`);
  }
  for (const [key, i] of lk) {
    const j = rk.get(key);
    if (j === undefined) continue;
    await compareNodes(lc[i]!, rc[j]!, `${prefix}${key}: `, out);
  }
  if (out.length === before) {
    out.push(`${prefix}the index documents differ, but list the same manifests for the same platforms (annotations, order or formatting)`);
  }
}

/** One key per entry: its platform, made unique with #2, #3 … (several attestations are unknown/unknown). */
function platformKeys(entries: Descriptor[]): Map<string, number> {
  const keys = new Map<string, number>();
  entries.forEach((d, i) => {
    const base = d.platform
      ? formatPlatform(d.platform) + (d.platform['os.version'] ? ` (${d.platform['os.version']})` : '')
      : `entry without platform`;
    let key = base;
    for (let n = 2; keys.has(key); n++) key = `${base} #${n}`;
    keys.set(key, i);
  });
  return keys;
}

async function compareManifests(
  local: Content,
  remote: Content,
  ld: ParsedDocument & { kind: 'manifest' },
  rd: ParsedDocument & { kind: 'manifest' },
  prefix: string,
  out: string[],
): Promise<void> {
  const before = out.length;
  const lm = ld.manifest;
  const rm = rd.manifest;
  if (lm.config.digest !== rm.config.digest) {
    out.push(`${prefix}config: local ${lm.config.digest} (${lm.config.size} bytes), remote ${rm.config.digest} (${rm.config.size} bytes)`);
  }
  if (lm.config.mediaType !== rm.config.mediaType) out.push(`${prefix}config media type: local ${lm.config.mediaType}, remote ${rm.config.mediaType}`);
  if (lm.layers.length !== rm.layers.length) out.push(`${prefix}layer count: local ${lm.layers.length}, remote ${rm.layers.length}`);
  let layersDiffer = false;
  for (let i = 0; i < Math.max(lm.layers.length, rm.layers.length); i++) {
    const a = lm.layers[i];
    const b = rm.layers[i];
    if (a && b && a.digest === b.digest && a.mediaType === b.mediaType) continue;
    layersDiffer = true;
    if (!b) out.push(`${prefix}layer ${i}: only in local (${a!.digest}, ${a!.size} bytes)`);
    else if (!a) out.push(`${prefix}layer ${i}: only in remote (${b.digest}, ${b.size} bytes)`);
    else if (a.digest !== b.digest) {
      out.push(`${prefix}layer ${i}: local ${a.digest} (${a.size} bytes, ${a.mediaType}), remote ${b.digest} (${b.size} bytes, ${b.mediaType})`);
    } else out.push(`${prefix}layer ${i}: media type local ${a.mediaType}, remote ${b.mediaType}`);
  }
  if (lm.config.digest !== rm.config.digest || layersDiffer) {
    await explainConfigs(local, remote, prefix, layersDiffer, out);
  }
  if (out.length === before) {
    out.push(`${prefix}the manifests list the same config and layers but differ as documents (annotations, fields or formatting)`);
  }
}

/** What configs say about the difference: changed settings, or layers that differ only in compression. */
async function explainConfigs(local: Content, remote: Content, prefix: string, layersDiffer: boolean, out: string[]): Promise<void> {
  const [lc, rc] = await Promise.all([local.children(), remote.children()]);
  const [a, b] = await Promise.all([readConfig(lc[0]), readConfig(rc[0])]);
  if (!a || !b) return;
  const la = a.rootfs?.diff_ids ?? [];
  const lb = b.rootfs?.diff_ids ?? [];
  if (layersDiffer && la.length === lb.length && la.every((d, i) => d === lb[i])) {
    out.push(`${prefix}the layers have the same uncompressed content (diff_ids) and differ only in their compression`);
  }
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
  const changed = [...keys].filter((k) => JSON.stringify(a[k]) !== JSON.stringify(b[k]));
  if (changed.length) out.push(`${prefix}config fields that differ: ${changed.join(', ')}`);
}

async function readConfig(content: Content | undefined): Promise<ImageConfig | undefined> {
  if (!content) return undefined;
  try {
    return parseConfig(await readContent(content), 'config');
  } catch {
    return undefined;
  }
}

async function readDocument(content: Content, desc: Descriptor, side: string, prefix: string, out: string[]): Promise<ParsedDocument | undefined> {
  try {
    return parseDocument(await readContent(content), `${side} ${desc.digest}`, desc.mediaType);
  } catch (e) {
    out.push(`${prefix}${side} ${desc.digest} cannot be read: ${describeFailure(e)}`);
    return undefined;
  }
}
