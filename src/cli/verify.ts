import { existsSync } from 'node:fs';
import type { CommandModule } from 'yargs';
import { compareImages, isIndexType, parsePlatform, parseReference, pickPlatform, resolveRemote, selectImages, usageError, verifyImages, type Comparison, type Content, type RegistryOptions, type RemoteImage, type VerifyReport } from '../index.js';
import { json, openSource, sourcePath, out, reporterFor, run, selection, withSourceOptions, type SourceArgs } from './common.js';
import { registryOptions, withRegistryOptions, type RegistryArgs } from './registry-options.js';

interface VerifyArgs extends SourceArgs, RegistryArgs {
  source: string;
  ref?: string;
  json: boolean;
}

async function remoteRoot(text: string, opts: RegistryOptions, platform: string | undefined): Promise<{ remote: RemoteImage; content: Content }> {
  const remote = await resolveRemote(parseReference(text), opts);
  try {
    const content = platform && isIndexType(remote.mediaType) ? await pickPlatform(remote.root, parsePlatform(platform), text) : remote.root;
    return { remote, content };
  } catch (e) {
    await remote.close();
    throw e;
  }
}

function printReport(where: string, report: VerifyReport, comparison?: { ref: string; result: Comparison }): void {
  // Messages already name their blob or file; the JSON report carries digest and path apart.
  for (const p of report.problems) out(`problem: ${p.problem}`);
  for (const w of report.warnings) out(`warning: ${w.problem}`);
  const c = report.checked;
  out(`${where}: ${report.ok ? 'ok' : `${report.problems.length} problem(s)`} (${c.manifests} manifest(s), ${c.configs} config(s), ${c.layers} layer(s), ${c.bytes} bytes checked)`);
  if (comparison) {
    for (const d of comparison.result.differences) out(`differs: ${d}`);
    out(`${comparison.ref}: ${comparison.result.same ? 'same image' : 'differs from the local image'}`);
  }
}

export const verifyCommand: CommandModule<object, VerifyArgs> = {
  command: 'verify <source> [ref]',
  describe: 'Check every blob, size and diff_id of an image; with REF, compare it with a remote image',
  builder: (y) =>
    withRegistryOptions(withSourceOptions(y))
      .positional('source', { type: 'string', demandOption: true, describe: 'Image tarball, OCI layout directory, - for stdin, or a registry reference' })
      .positional('ref', { type: 'string', describe: 'A registry reference to compare the local image with' })
      .option('json', { type: 'boolean', default: false, describe: 'Print a JSON report' }) as never,
  handler: (args) =>
    run(args, async () => {
      const reporter = reporterFor(args);
      const local = sourcePath(args.source) === '-' || existsSync(args.source);
      if (!local && args.ref) throw usageError(`verify: ${args.source} is not a file or directory`);
      const opts = !local || args.ref ? await registryOptions(args, reporter) : {};
      try {
        if (!local) {
          const { remote, content } = await remoteRoot(args.source, opts, args.platform);
          try {
            const report = await verifyImages([content], { where: args.source, reporter });
            if (args.json) json({ source: args.source, ...report });
            else printReport(args.source, report);
            return report.ok ? 0 : 1;
          } finally {
            await remote.close();
          }
        }
        // Integrity: layers as stored (a legacy archive's uncompressed layers are checked
        // against their diff_ids directly, without compressing them).
        const stored = await openSource(args.source, args, { compression: 'none' });
        let report: VerifyReport;
        let comparison: { ref: string; result: Comparison } | undefined;
        try {
          const selected = await selectImages(stored, selection(args));
          const layoutTree = stored.tree.has('index.json') && args.image === undefined ? stored.tree : undefined;
          report = await verifyImages(
            selected.map((s) => s.content),
            { where: stored.where, reporter, ...(layoutTree ? { tree: layoutTree } : {}) },
          );
          if (args.ref) {
            if (selected.length !== 1) throw usageError(`${stored.where} holds ${selected.length} images; pick the one to compare with --image`);
            comparison = { ref: args.ref, result: await compareWithRemote(args, opts) };
          }
        } finally {
          await stored.close();
        }
        const ok = report.ok && (comparison?.result.same ?? true);
        if (args.json) json({ source: stored.where, ...report, ok, ...(comparison ? { comparison: { ref: comparison.ref, ...comparison.result } } : {}) });
        else printReport(stored.where, report, comparison);
        return ok ? 0 : 1;
      } finally {
        reporter.close();
      }
    }),
};

/** The image as push would send it (synthesised layers gzipped), against the registry's. */
async function compareWithRemote(args: VerifyArgs, opts: RegistryOptions): Promise<Comparison> {
  const source = await openSource(args.source, args);
  try {
    const [local] = await selectImages(source, selection(args));
    const { remote, content } = await remoteRoot(args.ref!, opts, args.platform);
    try {
      return await compareImages(local!.content, content);
    } finally {
      await remote.close();
    }
  } finally {
    await source.close();
  }
}
