import { existsSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { CommandModule } from 'yargs';
import { Annotation, ArchiveTarget, inputError, Copier, OciLayoutTarget, formatPlatform, formatReference, isIndexType, parseDocument, parsePlatform, parseReference, pickPlatform, readContent, resolveRemote, usageError, type Content, type Descriptor, type Platform, type Reference } from '../index.js';
import { json, out, reporterFor, run, type GlobalArgs } from './common.js';
import { parseLayoutDestination, parseSize } from './destination.js';
import { registryOptions, withRegistryOptions, type RegistryArgs } from './registry-options.js';

interface PullArgs extends GlobalArgs, RegistryArgs {
  args: string[];
  platform?: string;
  'all-platforms': boolean;
  format?: 'docker' | 'oci';
  json: boolean;
  jobs: number;
  'chunk-size'?: string;
}

/** The platform pulled from an index by default: this machine's, as docker and skopeo do. */
export function hostPlatform(): Platform {
  const arch: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' };
  return { os: 'linux', architecture: arch[process.arch] ?? process.arch };
}

type Output = { kind: 'archive'; path: string; gzip: boolean } | { kind: 'layout'; dir: string };

function parseOutput(text: string, format: 'docker' | 'oci' | undefined): Output {
  if (text.startsWith('oci:')) {
    const { dir, tag } = parseLayoutDestination(text);
    if (tag) throw usageError(`pull: ${text}: the layout gets each image's own tag; give oci:DIR`);
    return { kind: 'layout', dir };
  }
  let isDir = false;
  try {
    isDir = statSync(text).isDirectory();
  } catch {
    isDir = false;
  }
  if (format === 'oci' && (isDir || !/\.(tar|tar\.gz|tgz)$/.test(text))) return { kind: 'layout', dir: text };
  if (isDir) throw usageError(`pull: ${text} is a directory; give a file name (x.tar) or oci:${text}`);
  // Checked before any download, so a typo costs nothing.
  const parent = dirname(resolve(text));
  if (!existsSync(parent) || !statSync(parent).isDirectory()) throw inputError(text, `cannot write here: ${parent} is not a directory`);
  return { kind: 'archive', path: text, gzip: /\.(gz|tgz)$/.test(text) };
}

interface Pulled {
  ref: string;
  digest: string;
  mediaType: string;
  platform?: string;
}

/** The single-platform manifest docker load can take from a root (an index: the host's). */
async function loadableManifest(root: Content, want: Platform): Promise<{ desc: Descriptor; bytes: Buffer } | undefined> {
  let node = root;
  if (isIndexType((await root.describe()).mediaType)) {
    try {
      node = await pickPlatform(root, want, 'index');
    } catch {
      return undefined;
    }
  }
  const desc = await node.describe();
  return { desc, bytes: await readContent(node) };
}

export const pullCommand: CommandModule<object, PullArgs> = {
  command: 'pull <args..>',
  describe: 'Download images (REF... OUT) into a docker-loadable OCI archive or an OCI layout',
  builder: (y) =>
    withRegistryOptions(y)
      .usage('$0 pull REF... OUT [options]\n\nDownload images into a docker-loadable OCI archive (x.tar, x.tar.gz) or an OCI layout (oci:DIR)')
      .positional('args', { type: 'string', array: true, describe: 'One or more references, then the output: x.tar, x.tar.gz or oci:DIR' })
      .option('platform', { type: 'string', describe: 'Pick os/arch[/variant] from multi-platform images (default: this machine, linux/amd64 here)' })
      .option('all-platforms', { type: 'boolean', default: false, describe: 'Keep whole multi-platform indexes (their digests are kept)' })
      .option('format', { choices: ['docker', 'oci'] as const, describe: 'oci with a directory OUT writes an OCI layout directory' })
      .option('json', { type: 'boolean', default: false, describe: 'Print a JSON report of what was pulled' })
      .option('jobs', { type: 'number', default: 4, describe: 'Blobs downloaded in parallel' })
      .option('chunk-size', { type: 'string', hidden: true }) as never,
  handler: (args) =>
    run(args, async () => {
      const list = args.args ?? [];
      if (list.length < 2) throw usageError('pull needs at least one reference and an output (tarpush pull REF... OUT)');
      if (args.platform && args['all-platforms']) throw usageError('--platform and --all-platforms do not go together');
      const output = parseOutput(list[list.length - 1]!, args.format);
      const refs: Reference[] = list.slice(0, -1).map((r) => parseReference(r));
      const want = args.platform ? parsePlatform(args.platform) : hostPlatform();
      const reporter = reporterFor(args);
      const opts = await registryOptions(args, reporter);
      if (args['chunk-size']) opts.chunkSize = parseSize(args['chunk-size'], '--chunk-size');
      const target = output.kind === 'archive' ? new ArchiveTarget(output.path, { gzip: output.gzip }) : new OciLayoutTarget(output.dir);
      const copier = new Copier(target, { jobs: args.jobs, reporter });
      const pulled: Pulled[] = [];
      try {
        for (const ref of refs) {
          const name = formatReference({ ...ref, digest: undefined });
          const remote = await resolveRemote(ref, opts);
          try {
            let content: Content = remote.root;
            if (!args['all-platforms'] && isIndexType(remote.mediaType)) content = await pickPlatform(remote.root, want, formatReference(ref));
            const desc = await copier.copy(content);
            const fullName = ref.tag ? name : `${name}@${desc.digest}`;
            const annotations = { [Annotation.refName]: ref.tag ?? desc.digest, [Annotation.containerdName]: fullName };
            if (target instanceof ArchiveTarget) {
              target.addRoot(desc, annotations);
              const loadable = await loadableManifest(content, want);
              if (loadable) {
                const doc = parseDocument(loadable.bytes, fullName, loadable.desc.mediaType);
                if (doc.kind === 'manifest') target.addDockerImage(loadable.desc, doc.manifest.config, doc.manifest.layers, ref.tag ? [name] : []);
              }
            } else {
              // A layout is often a shared mirror: the full name keeps app:1 and tools:1 apart.
              await target.addRoot(desc, { ...annotations, [Annotation.refName]: fullName });
            }
            pulled.push({ ref: formatReference(ref), digest: desc.digest, mediaType: desc.mediaType, platform: formatPlatform(desc.platform) || undefined });
          } finally {
            await remote.close();
          }
        }
        if (target instanceof ArchiveTarget) await target.commit();
      } catch (e) {
        if (target instanceof ArchiveTarget) await target.abort(e as Error);
        throw e;
      } finally {
        reporter.close();
      }
      if (args.json) json(pulled);
      else for (const p of pulled) out(`${p.ref.replace(/@sha256:[a-f0-9]+$/, '')}@${p.digest}`);
    }),
};
