import { tmpdir } from 'node:os';
import type { Argv } from 'yargs';
import { CompressionCache, ExitCode, TarpushError, createReporter, isTarpushError, openImageSource, parsePlatform, type ImageSource, type ProgressReporter, type Selection, type SynthesisOptions } from '../index.js';

/** Options every command takes. */
export interface GlobalArgs {
  debug: boolean;
  quiet: boolean;
  tmpdir?: string;
  cache: boolean;
}

export interface SourceArgs extends GlobalArgs {
  image?: string;
  platform?: string;
  format: 'docker' | 'oci';
  compression: 'gzip' | 'none';
}

export function withSourceOptions<T>(y: Argv<T>) {
  return y
    .option('image', { type: 'string', describe: 'Pick one image: a tag (alpine = docker.io/library/alpine:latest), a layout ref name, or @N (0-based)' })
    .option('platform', { type: 'string', describe: 'Pick os/arch[/variant] inside an index' })
    .option('format', {
      choices: ['docker', 'oci'] as const,
      default: 'docker' as const,
      describe: 'Media types of manifests tarpush builds for inputs without one (legacy docker save, crane tarballs)',
    })
    .option('compression', {
      choices: ['gzip', 'none'] as const,
      default: 'gzip' as const,
      describe: 'What to do with uncompressed layers of inputs without a manifest: gzip them (deterministic) or keep them',
    });
}

export function selection(args: SourceArgs): Selection {
  return { image: args.image, platform: args.platform ? parsePlatform(args.platform) : undefined };
}

export interface OpenSourceHow extends Partial<SynthesisOptions> {
  /** Keep compressed layers for upload (push, load --layout): no layer is compressed twice. */
  spool?: boolean;
}

export async function openSource(path: string, args: SourceArgs, how: OpenSourceHow = {}): Promise<ImageSource> {
  const { spool, ...overrides } = how;
  const synthesis: SynthesisOptions = {
    format: args.format,
    compression: args.compression,
    cache: args.cache ? new CompressionCache() : undefined,
    spoolDir: spool ? (args.tmpdir ?? tmpdir()) : false,
    ...overrides,
  };
  return openImageSource(sourcePath(path), { tmpdir: args.tmpdir, synthesis });
}

/** yargs turns a lone `-` positional into an empty string; `-` means standard input. */
export function sourcePath(path: string): string {
  return path === '' ? '-' : path;
}

export function reporterFor(args: GlobalArgs): ProgressReporter {
  return createReporter({ quiet: args.quiet, debug: args.debug });
}

/** Writes results to stdout (the only thing that ever goes there). */
export function out(line: string): void {
  process.stdout.write(`${line}\n`);
}

export function json(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/**
 * Runs a command body: a TarpushError becomes one line on stderr and its documented exit code;
 * anything else is a bug (exit 70), with the stack only under --debug.
 */
export async function run(args: { debug?: boolean }, body: () => Promise<number | void>): Promise<void> {
  try {
    const code = await body();
    process.exitCode = code ?? ExitCode.ok;
  } catch (e) {
    process.exitCode = reportError(e, Boolean(args.debug));
  }
}

export function reportError(e: unknown, debug: boolean): number {
  if (isTarpushError(e)) {
    process.stderr.write(`tarpush: ${e.message}\n`);
    if (debug && e.stack) process.stderr.write(`${e.stack}\n`);
    return e.exitCode;
  }
  const err = e as NodeJS.ErrnoException;
  if (err?.code === 'ENOSPC') {
    process.stderr.write(`tarpush: no space left on device${err.path ? ` (${err.path})` : ''}\n`);
    return ExitCode.input;
  }
  process.stderr.write(`tarpush: internal error: ${err?.message ?? String(e)}${debug ? '' : ' (run with --debug for details)'}\n`);
  if (debug && err?.stack) process.stderr.write(`${err.stack}\n`);
  return ExitCode.internal;
}

export { TarpushError };
