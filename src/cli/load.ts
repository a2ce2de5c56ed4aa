import type { CommandModule } from 'yargs';
import { Annotation, Copier, OciLayoutTarget, formatBytes, selectImages, summarise, type EntrySummary } from '../index.js';
import { json, openSource, out, reporterFor, run, selection, withSourceOptions, type SourceArgs } from './common.js';

interface LoadArgs extends SourceArgs {
  source: string;
  json: boolean;
  layout?: string;
}

function short(digest: string): string {
  return digest.slice(0, 19);
}

function table(rows: string[][]): string[] {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd());
}

function render(where: string, format: string, summaries: EntrySummary[]): string[] {
  const rows = [['#', 'IMAGE', 'PLATFORM', 'DIGEST', 'CONFIG', 'LAYERS', 'SIZE']];
  for (const s of summaries) {
    const name = (s.tags.length ? s.tags : s.refNames).join(', ') || '(untagged)';
    if (s.manifests.length === 1 && s.manifests[0]!.digest === s.digest) {
      const m = s.manifests[0]!;
      rows.push([`@${s.position}`, name, m.platform || '-', s.digest, short(m.config), String(m.layers), formatBytes(m.size)]);
    } else {
      rows.push([`@${s.position}`, name, `index (${s.manifests.length})`, s.digest, '', '', '']);
      for (const m of s.manifests) rows.push(['', '', `  ${m.platform || '-'}`, m.digest, short(m.config), String(m.layers), formatBytes(m.size)]);
    }
  }
  return [`${where}: ${format}, ${summaries.length} image(s)`, ...table(rows)];
}

export const loadCommand: CommandModule<object, LoadArgs> = {
  command: 'load <source>',
  describe: 'Show the images in a tarball or layout, optionally importing them into an OCI layout',
  builder: (y) =>
    withSourceOptions(y)
      .positional('source', { type: 'string', demandOption: true, describe: 'Image tarball (plain or compressed), OCI layout directory, or - for stdin' })
      .option('json', { type: 'boolean', default: false, describe: 'Print stable JSON instead of a table' })
      .option('layout', { type: 'string', describe: 'Import the image(s) into this OCI layout directory (created or added to)' }) as never,
  handler: (args) =>
    run(args, async () => {
      const reporter = reporterFor(args);
      const source = await openSource(args.source, args, { spool: Boolean(args.layout), reporter });
      try {
        const selected = await selectImages(source, selection(args));
        const summaries: EntrySummary[] = [];
        for (const s of selected) summaries.push(await summarise(s.entry, s.content));
        if (args.layout) {
          const target = new OciLayoutTarget(args.layout);
          const copier = new Copier(target, { reporter });
          for (const s of selected) {
            const desc = await copier.copy(s.content);
            // Tags keep their full name so several images can share one layout without clashing.
            for (const tag of s.entry.tags) await target.addRoot(desc, { [Annotation.refName]: tag, [Annotation.containerdName]: tag });
            for (const ref of s.entry.tags.length ? [] : s.entry.refNames) await target.addRoot(desc, { [Annotation.refName]: ref });
            if (!s.entry.tags.length && !s.entry.refNames.length) await target.addRoot(desc);
          }
          reporter.info(`imported ${selected.length} image(s) into ${args.layout}`);
        }
        if (args.json) json({ source: source.where, format: source.format, images: summaries });
        else for (const line of render(source.where, source.format, summaries)) out(line);
      } finally {
        reporter.close();
        await source.close();
      }
    }),
};
