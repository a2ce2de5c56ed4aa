import { inputError } from '../errors.js';
import type { Descriptor } from '../image/descriptor.js';
import { checkDescriptor, parseJson } from '../image/manifest.js';

/** One entry of a `docker save` manifest.json. */
export interface SaveEntry {
  config: string;
  repoTags: string[];
  layers: string[];
  /** Descriptors Docker recorded for layers it could not include (foreign/non-distributable). */
  layerSources: Record<string, Descriptor>;
}

/** Looks a key up the way Docker's Go decoder does: exact first, then case-insensitively. */
function field(obj: Record<string, unknown>, name: string): unknown {
  if (name in obj) return obj[name];
  const lower = name.toLowerCase();
  const key = Object.keys(obj).find((k) => k.toLowerCase() === lower);
  return key === undefined ? undefined : obj[key];
}

/** Archive member names as written in manifest.json, in the tree's normalised form. */
export function normaliseMember(name: string): string {
  let n = name.replace(/\\/g, '/').replace(/\/{2,}/g, '/');
  while (n.startsWith('./')) n = n.slice(2);
  return n.replace(/^\/+/, '').replace(/\/$/, '');
}

export function parseSaveManifest(bytes: Buffer, where: string): SaveEntry[] {
  const json = parseJson(bytes, where);
  if (json === null) throw inputError(where, 'is null: the archive lists no images');
  if (!Array.isArray(json)) throw inputError(where, 'is not a list of images');
  if (json.length === 0) throw inputError(where, 'is an empty list: the archive holds no images');
  return json.map((raw, i) => {
    const at = `${where}: entry ${i}`;
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw inputError(at, 'is not an object');
    const obj = raw as Record<string, unknown>;
    const config = field(obj, 'Config');
    if (typeof config !== 'string' || config === '') throw inputError(at, 'has no Config');
    const layers = field(obj, 'Layers') ?? [];
    if (!Array.isArray(layers) || layers.some((l) => typeof l !== 'string' || l === '')) {
      throw inputError(at, 'has an invalid Layers list');
    }
    const tags = field(obj, 'RepoTags') ?? [];
    if (!Array.isArray(tags) || tags.some((t) => typeof t !== 'string')) throw inputError(at, 'has an invalid RepoTags list');
    const sources = field(obj, 'LayerSources') ?? {};
    const layerSources: Record<string, Descriptor> = {};
    if (typeof sources === 'object' && sources !== null && !Array.isArray(sources)) {
      for (const [diffId, desc] of Object.entries(sources)) layerSources[diffId] = checkDescriptor(desc, `${at}: LayerSources`);
    }
    return {
      config: normaliseMember(config),
      repoTags: tags as string[],
      layers: (layers as string[]).map(normaliseMember),
      layerSources,
    };
  });
}
