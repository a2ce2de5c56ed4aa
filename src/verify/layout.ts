import { createHash } from 'node:crypto';
import type { FileTree } from '../archive/filetree.js';
import { parseDigest, isDigest } from '../image/digest.js';
import { parseDocument, parseJson } from '../image/manifest.js';
import type { ProgressReporter } from '../progress/progress.js';
import { describeFailure } from './errors.js';
import type { Limiter } from './limit.js';
import type { Findings } from './report.js';

const BLOB_FILE = /^blobs\/([a-z0-9]+)\/([a-f0-9]+)$/;

/**
 * File-level checks of an OCI layout (a directory, or a tar that holds one): every blob file's
 * content hashes to its name, and every blob is reachable from index.json (or, in a Docker 25
 * archive, from manifest.json). Blobs the graph walk already read (`touched`) are not hashed
 * again: the walk read them by name and checked them against the digest that name spells.
 */
export async function checkLayoutTree(
  tree: FileTree,
  findings: Findings,
  ctx: { touched: Set<string>; limiter: Limiter; reporter?: ProgressReporter },
): Promise<void> {
  if (!tree.has('index.json') && !tree.has('oci-layout')) return;
  if (tree.has('oci-layout')) {
    try {
      const layout = parseJson(await tree.read('oci-layout', 1 << 16), 'oci-layout') as { imageLayoutVersion?: unknown };
      if (typeof layout?.imageLayoutVersion !== 'string') {
        findings.problem('oci-layout has no imageLayoutVersion', { path: 'oci-layout' });
      }
    } catch (e) {
      findings.problem(`oci-layout: ${describeFailure(e)}`, { path: 'oci-layout' });
    }
  } else {
    findings.problem('the layout has no oci-layout file', { path: 'oci-layout' });
  }

  const referenced = await referencedBlobs(tree, findings);
  const from = tree.has('manifest.json') ? 'index.json or manifest.json' : 'index.json';
  const files = tree.files().filter((f) => f.startsWith('blobs/'));
  const present = new Set<string>();
  await Promise.all(
    files.map(async (path) => {
      const m = BLOB_FILE.exec(path);
      const digest = m ? `${m[1]}:${m[2]}` : undefined;
      if (!digest || !isDigest(digest)) {
        findings.warning(`unexpected file ${path} (not blobs/<algorithm>/<hex>)`, { path });
        return;
      }
      present.add(digest);
      if (!referenced.has(digest)) findings.warning(`unreferenced blob ${digest} (not reachable from ${from})`, { digest, path });
      if (ctx.touched.has(digest)) return;
      await ctx.limiter.run(async () => {
        const progress = ctx.reporter?.start(parseDigest(digest).hex.slice(0, 12), 'hashing', tree.size(path));
        try {
          const hash = createHash(parseDigest(digest).algorithm);
          let size = 0;
          for await (const chunk of tree.open(path)) {
            hash.update(chunk as Buffer);
            size += (chunk as Buffer).length;
          }
          findings.checked.bytes += size;
          const actual = `${parseDigest(digest).algorithm}:${hash.digest('hex')}`;
          if (actual !== digest) {
            findings.problem(`blob file ${path} does not hold what its name says: its content hashes to ${actual}`, { digest, path });
          }
          progress?.done();
        } catch (e) {
          progress?.fail();
          findings.problem(`blob file ${path} cannot be read: ${describeFailure(e)}`, { digest, path });
        }
      });
    }),
  );
  for (const digest of referenced) {
    if (present.has(digest) || ctx.touched.has(digest)) continue;
    const { algorithm, hex } = parseDigest(digest);
    findings.problem(`blob ${digest} is referenced but missing (no blobs/${algorithm}/${hex})`, { digest, path: `blobs/${algorithm}/${hex}` });
  }
}

/**
 * Every digest reachable from index.json (and manifest.json) through manifests and indexes, read
 * from the tree itself. Documents that cannot be read or parsed end the walk on that branch
 * silently: the graph walk or the blob hashing reports them.
 */
async function referencedBlobs(tree: FileTree, findings: Findings): Promise<Set<string>> {
  const seen = new Set<string>();
  const visit = async (digest: unknown, mediaType?: unknown): Promise<void> => {
    if (!isDigest(digest) || seen.has(digest)) return;
    seen.add(digest);
    const { algorithm, hex } = parseDigest(digest);
    const path = `blobs/${algorithm}/${hex}`;
    if (typeof mediaType === 'string' && !/manifest|index|list/.test(mediaType)) return;
    if (!tree.has(path)) return;
    let doc;
    try {
      doc = parseDocument(await tree.read(path), path, typeof mediaType === 'string' ? mediaType : undefined);
    } catch {
      return;
    }
    if (doc.kind === 'index') {
      await Promise.all(doc.index.manifests.map((m) => visit(m.digest, m.mediaType)));
      if (doc.index.subject) await visit(doc.index.subject.digest, doc.index.subject.mediaType);
    } else {
      await visit(doc.manifest.config.digest, doc.manifest.config.mediaType);
      await Promise.all(doc.manifest.layers.map((l) => visit(l.digest, l.mediaType)));
      if (doc.manifest.subject) await visit(doc.manifest.subject.digest, doc.manifest.subject.mediaType);
    }
  };

  if (tree.has('index.json')) {
    try {
      const index = parseJson(await tree.read('index.json'), 'index.json') as { manifests?: unknown };
      if (index?.manifests !== null && index?.manifests !== undefined && !Array.isArray(index.manifests)) {
        findings.problem('index.json: "manifests" is not a list', { path: 'index.json' });
      } else {
        for (const m of (index?.manifests as Array<{ digest?: unknown; mediaType?: unknown }> | undefined) ?? []) {
          await visit(m?.digest, m?.mediaType);
        }
      }
    } catch (e) {
      findings.problem(`index.json: ${describeFailure(e)}`, { path: 'index.json' });
    }
  } else {
    findings.problem('the layout has no index.json', { path: 'index.json' });
  }

  if (tree.has('manifest.json')) {
    try {
      const entries = parseJson(await tree.read('manifest.json'), 'manifest.json');
      for (const entry of Array.isArray(entries) ? entries : []) {
        const e = entry as { Config?: unknown; Layers?: unknown };
        for (const p of [e.Config, ...(Array.isArray(e.Layers) ? e.Layers : [])]) {
          const m = typeof p === 'string' ? BLOB_FILE.exec(p) : null;
          if (m) seen.add(`${m[1]}:${m[2]}`);
        }
      }
    } catch {
      // A broken manifest.json is the docker-archive reader's to report.
    }
  }
  return seen;
}
