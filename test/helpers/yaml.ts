/**
 * Minimal YAML emitter for registry configs: nested maps, lists of scalars and
 * scalars. Strings are emitted double-quoted with JSON escapes, which YAML
 * reads identically, so temp paths with odd characters need no special care.
 */
export type YamlValue = string | number | boolean | YamlValue[] | { [key: string]: YamlValue | undefined };

function scalar(value: string | number | boolean): string {
  return typeof value === 'string' ? JSON.stringify(value) : String(value);
}

export function toYaml(value: { [key: string]: YamlValue | undefined }, indent = 0): string {
  const pad = ' '.repeat(indent);
  let out = '';
  for (const [key, v] of Object.entries(value)) {
    if (v === undefined) continue;
    if (Array.isArray(v)) {
      out += `${pad}${key}: [${v.map((item) => {
        if (typeof item === 'object') throw new Error('toYaml: lists hold scalars only');
        return scalar(item);
      }).join(', ')}]\n`;
    } else if (typeof v === 'object') {
      out += `${pad}${key}:\n${toYaml(v, indent + 2)}`;
    } else {
      out += `${pad}${key}: ${scalar(v)}\n`;
    }
  }
  return out;
}
