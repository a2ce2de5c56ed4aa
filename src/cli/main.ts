import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { ExitCode, installCleanupHandlers } from '../index.js';
import { digestCommand } from './digest.js';
import { loadCommand } from './load.js';
import { pushCommand } from './push.js';
import { pullCommand } from './pull.js';
import { verifyCommand } from './verify.js';

export async function main(argv: string[] = hideBin(process.argv)): Promise<void> {
  installCleanupHandlers();
  // `tarpush load x.tar | head` closes our stdout early: that is the reader's choice, not an error.
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(0);
    throw e;
  });
  await yargs(argv)
    .scriptName('tarpush')
    .usage('$0 <command> [options]\n\nMove container images between tarballs, OCI layouts and registries, without a Docker daemon.')
    .option('debug', { type: 'boolean', default: false, global: true, describe: 'Log requests and decisions to stderr, and show stack traces' })
    .option('quiet', { alias: 'q', type: 'boolean', default: false, global: true, describe: 'No progress output' })
    .option('tmpdir', { type: 'string', global: true, describe: 'Directory for temporary files (default $TMPDIR or /tmp)' })
    .option('cache', { type: 'boolean', default: true, global: true, describe: 'Use the compression cache ($XDG_CACHE_HOME/tarpush); --no-cache to skip it' })
    .command(loadCommand)
    .command(digestCommand)
    .command(pushCommand)
    .command(pullCommand)
    .command(verifyCommand)
    .demandCommand(1, 'Give a command: load, digest, push, pull or verify')
    .strict()
    .recommendCommands()
    .help()
    .alias('h', 'help')
    .version()
    .wrap(Math.min(110, process.stdout.columns || 100))
    .fail((msg, err, y) => {
      if (err) throw err;
      process.stderr.write(`tarpush: ${msg} (see tarpush --help)\n`);
      void y;
      process.exit(ExitCode.usage);
    })
    .parseAsync();
}
