import { writeFile, rename } from 'node:fs/promises';
import type { CommandModule } from 'yargs';
import { Copier, OciLayoutTarget, RegistryTarget, TarpushError, formatReference, installGracefulInterrupt, openRegistry, repositoryName, selectImages, selectOne, usageError, type Descriptor, type ProgressReporter, type Reference, type RegistryOptions, type SelectedImage } from '../index.js';
import { json, openSource, out, reporterFor, run, selection, withSourceOptions, type SourceArgs } from './common.js';
import { destinationForTag, parseDestination, parseSize } from './destination.js';
import { registryOptions, withRegistryOptions, type RegistryArgs } from './registry-options.js';

interface PushArgs extends SourceArgs, RegistryArgs {
  source: string;
  dest: string;
  all: boolean;
  json: boolean;
  'digest-file'?: string;
  jobs: number;
  'chunk-size'?: string;
}

interface Pushed {
  image: string;
  dest: string;
  digest: string;
  mediaType: string;
  size: number;
  blobsSent: number;
  blobsSkipped: number;
  blobsMounted: number;
  bytesSent: number;
}

/** Pushes one image to a registry repository and confirms the registry serves the same digest. */
async function pushToRegistry(
  image: SelectedImage,
  ref: Reference,
  opts: RegistryOptions,
  jobs: number,
  reporter: ProgressReporter,
  mountFrom: string[],
): Promise<Pushed> {
  const client = openRegistry(ref, { ...opts, access: 'push' });
  const target = new RegistryTarget(client, { mountFrom });
  try {
    const copier = new Copier(target, { jobs, reporter });
    if (ref.digest) {
      const local = await image.content.describe();
      if (local.digest !== ref.digest) {
        throw new TarpushError('failed', `${image.label} has digest ${local.digest}, not the ${ref.digest} that ${ref.registry}/${ref.repository}@… asks for`);
      }
    }
    const desc = await copier.copy(image.content, ref.tag);
    await confirm(target, ref, desc);
    return summary(image, `${formatReference({ ...ref, digest: undefined })}@${desc.digest}`, desc, copier);
  } finally {
    await target.close();
  }
}

async function confirm(target: RegistryTarget, ref: Reference, desc: Descriptor): Promise<void> {
  const remote = ref.tag ? await target.remoteDigest(ref.tag) : (await target.exists(desc)) ? desc.digest : undefined;
  if (remote !== desc.digest) {
    throw new TarpushError('failed', `${formatReference(ref)}: local digest ${desc.digest} but the registry has ${remote ?? 'nothing'}`);
  }
}

function summary(image: SelectedImage, dest: string, desc: Descriptor, copier: Copier): Pushed {
  return {
    image: image.label,
    dest,
    digest: desc.digest,
    mediaType: desc.mediaType,
    size: desc.size,
    blobsSent: copier.stats.blobsSent,
    blobsSkipped: copier.stats.blobsSkipped,
    blobsMounted: copier.stats.blobsMounted,
    bytesSent: copier.stats.bytesSent,
  };
}

async function writeDigestFile(path: string, pushed: Pushed[]): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  await writeFile(tmp, pushed.map((p) => `${p.digest} ${p.dest.replace(/@sha256:[a-f0-9]+$/, '')}\n`).join(''));
  await rename(tmp, path);
}

export const pushCommand: CommandModule<object, PushArgs> = {
  command: 'push <source> <dest>',
  describe: 'Upload images to a registry (or an OCI layout with oci:DIR[:TAG]) and check the digest',
  builder: (y) =>
    withRegistryOptions(withSourceOptions(y))
      .positional('source', { type: 'string', demandOption: true, describe: 'Image tarball (plain or compressed), OCI layout directory, or -' })
      .positional('dest', { type: 'string', demandOption: true, describe: 'registry/repository[:tag][@digest], oci:DIR[:TAG], or with --all a registry[/prefix]' })
      .option('all', { type: 'boolean', default: false, describe: 'Push every image of the input, each under DEST/<its repository>:<its tag>' })
      .option('json', { type: 'boolean', default: false, describe: 'Print a JSON report instead of DEST@digest lines' })
      .option('digest-file', { type: 'string', describe: 'Also write "sha256:… DEST" lines to this file' })
      .option('jobs', { type: 'number', default: 4, describe: 'Blobs uploaded (and layers compressed) in parallel' })
      .option('chunk-size', { type: 'string', describe: 'Upload large blobs in chunks of this size (e.g. 16MiB; default 16MiB)' }) as never,
  handler: (args) =>
    run(args, async () => {
      if (!Number.isInteger(args.jobs) || args.jobs < 1) throw usageError('--jobs must be a whole number of at least 1');
      if (args.all && args.image) throw usageError('--all and --image do not go together');
      // With --all a registry DEST is a registry[/prefix], not a reference: checked per image.
      const dest = args.all && !args.dest.startsWith('oci:') ? { kind: 'registry-prefix' as const, text: args.dest } : parseDestination(args.dest);
      const reporter = reporterFor(args);
      installGracefulInterrupt((m) => reporter.info(m));
      const opts = await registryOptions(args, reporter);
      if (args['chunk-size']) opts.chunkSize = parseSize(args['chunk-size'], '--chunk-size');
      const source = await openSource(args.source, args, { spool: true, reporter });
      const pushed: Pushed[] = [];
      try {
        const images = args.all ? await selectImages(source, selection(args)) : [await selectOne(source, selection(args))];
        if (dest.kind === 'layout') {
          const target = new OciLayoutTarget(dest.dir);
          const copier = new Copier(target, { jobs: args.jobs, reporter });
          for (const image of images) {
            const tag = dest.tag ?? (args.all ? image.entry.tags[0] : undefined);
            const desc = await copier.copy(image.content, tag);
            pushed.push(summary(image, `oci:${dest.dir}${tag ? `:${tag}` : ''}@${desc.digest}`, desc, copier));
          }
        } else {
          const mountFrom: string[] = [];
          for (const image of images) {
            let ref = dest.kind === 'registry' ? dest.ref : undefined;
            if (!ref) {
              const tag = image.entry.tags[0];
              if (!tag) throw usageError(`${source.where}: image ${image.label} has no tag; push it alone with --image ${image.label} DEST`);
              ref = destinationForTag(dest.text, tag);
            }
            const result = await pushToRegistry(image, ref, opts, args.jobs, reporter, mountFrom.filter((r) => r !== ref.repository));
            if (!mountFrom.includes(ref.repository)) mountFrom.push(ref.repository);
            pushed.push(result);
            reporter.info(`pushed ${repositoryName(ref)}: ${result.blobsSent} blob(s) sent, ${result.blobsMounted} mounted, ${result.blobsSkipped} already there`);
          }
        }
      } finally {
        reporter.close();
        await source.close();
      }
      if (args['digest-file']) await writeDigestFile(args['digest-file'], pushed);
      if (args.json) json(pushed);
      else for (const p of pushed) out(p.dest);
    }),
};
