import type { CommandModule } from 'yargs';
import { selectImages } from '../index.js';
import { json, openSource, out, run, selection, withSourceOptions, type SourceArgs } from './common.js';

interface DigestArgs extends SourceArgs {
  source: string;
  json: boolean;
}

export const digestCommand: CommandModule<object, DigestArgs> = {
  command: 'digest <source>',
  describe: 'Print the manifest digest a push of SOURCE will produce, computed offline',
  builder: (y) =>
    withSourceOptions(y)
      .positional('source', { type: 'string', demandOption: true, describe: 'Image tarball (plain or compressed), OCI layout directory, or - for stdin' })
      .option('json', { type: 'boolean', default: false, describe: 'Print a JSON list instead' }) as never,
  handler: (args) =>
    run(args, async () => {
      const source = await openSource(args.source, args);
      try {
        const selected = await selectImages(source, selection(args));
        const rows = [];
        for (const s of selected) {
          const desc = await s.content.describe();
          rows.push({ ref: s.label, digest: desc.digest, mediaType: desc.mediaType, size: desc.size });
        }
        if (args.json) json(rows);
        else if (rows.length === 1) out(rows[0]!.digest);
        else for (const r of rows) out(`${r.digest}\t${r.ref}`);
      } finally {
        await source.close();
      }
    }),
};
