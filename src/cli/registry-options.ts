import type { Argv } from 'yargs';
import { readAll, usageError, type ProgressReporter, type RegistryOptions } from '../index.js';

/** Transport and credential options shared by push, pull and verify. */
export interface RegistryArgs {
  'plain-http': boolean;
  insecure: boolean;
  'ca-file'?: string;
  cert?: string;
  key?: string;
  username?: string;
  'password-stdin': boolean;
}

export function withRegistryOptions<T>(y: Argv<T>) {
  return y
    .option('plain-http', { type: 'boolean', default: false, describe: 'Talk plain HTTP to the registry' })
    .option('insecure', { type: 'boolean', default: false, describe: 'Do not verify the registry TLS certificate' })
    .option('ca-file', { type: 'string', describe: 'PEM file of CA certificates to trust for the registry' })
    .option('cert', { type: 'string', describe: 'Client certificate (PEM) for mutual TLS' })
    .option('key', { type: 'string', describe: 'Client key (PEM) for mutual TLS' })
    .option('username', { alias: 'u', type: 'string', describe: 'Registry user name (password from --password-stdin)' })
    .option('password-stdin', { type: 'boolean', default: false, describe: 'Read the password or token from standard input' });
}

export async function registryOptions(args: RegistryArgs, reporter: ProgressReporter): Promise<RegistryOptions> {
  if ((args.cert === undefined) !== (args.key === undefined)) throw usageError('--cert and --key go together');
  let password: string | undefined;
  if (args['password-stdin']) {
    if (args.username === undefined) throw usageError('--password-stdin needs --username');
    password = (await readAll(process.stdin, 64 * 1024, 'standard input')).toString('utf8').replace(/\r?\n$/, '');
    if (!password) throw usageError('--password-stdin: standard input is empty');
  } else if (args.username !== undefined) {
    throw usageError('--username needs --password-stdin (passwords are never taken on the command line)');
  }
  return {
    plainHttp: args['plain-http'],
    insecure: args.insecure,
    caFile: args['ca-file'],
    certFile: args.cert,
    keyFile: args.key,
    username: args.username,
    password,
    reporter,
  };
}
