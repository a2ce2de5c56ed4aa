import { formatReference, parseReference } from '../registry/reference.js';

/**
 * Image names as archives carry them (`alpine`, `alpine:3.19`, `docker.io/library/alpine:latest`,
 * `localhost:5000/x:1`) normalised to one form, so `--image alpine` finds an archive's
 * `docker.io/library/alpine:latest`. A bare word such as a layout ref name `latest` or `1.0` is a
 * tag without an image name, not a reference: it yields undefined.
 */
export function normaliseTag(name: string): string | undefined {
  if (!name.includes('/') && !name.includes(':')) return undefined;
  try {
    const ref = parseReference(name);
    if (ref.digest && !ref.tag) return undefined;
    return formatReference({ ...ref, digest: undefined });
  } catch {
    return undefined;
  }
}

/**
 * Normalises what a user typed for --image, or a RepoTags entry of manifest.json (always an
 * image name, so a bare word is one: `busybox` = docker.io/library/busybox:latest).
 */
export function normaliseSelector(text: string): string | undefined {
  try {
    const ref = parseReference(text);
    return formatReference({ ...ref, digest: undefined });
  } catch {
    return undefined;
  }
}
