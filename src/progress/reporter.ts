import type { Ora } from 'ora';
import type { Progress, ProgressReporter } from './progress.js';

/**
 * Progress on stderr only. On a TTY one ora spinner summarises the running blobs (bytes, speed,
 * ETA); elsewhere (CI logs) a plain line per running blob is printed at a steady pace so a log
 * shows work going on without drowning in lines.
 */
export interface ReporterOptions {
  quiet?: boolean;
  debug?: boolean;
  /** Defaults to process.stderr.isTTY. */
  tty?: boolean;
  /** Seconds between plain progress lines (default 5). */
  interval?: number;
  stream?: NodeJS.WritableStream;
}

interface Unit {
  id: string;
  label: string;
  total?: number;
  done: number;
  started: number;
}

function human(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = bytes;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

export function formatBytes(bytes: number): string {
  return human(bytes);
}

function describeUnit(u: Unit, now: number): string {
  const secs = Math.max((now - u.started) / 1000, 0.001);
  const speed = u.done / secs;
  let text = `${u.id} ${u.label} ${human(u.done)}`;
  if (u.total) {
    text += `/${human(u.total)}`;
    if (speed > 0 && u.done < u.total) text += ` ${human(speed)}/s ETA ${Math.ceil((u.total - u.done) / speed)}s`;
  }
  return text;
}

export function createReporter(opts: ReporterOptions = {}): ProgressReporter {
  const out = opts.stream ?? process.stderr;
  const write = (line: string) => out.write(`${line}\n`);
  const running = new Map<string, Unit>();
  const tty = opts.tty ?? Boolean(process.stderr.isTTY);
  let spinner: Ora | undefined;
  // ora (and what it pulls in) loads only when a terminal will show it.
  let makeSpinner: ((o: { stream: NodeJS.WriteStream; discardStdin: boolean; text: string }) => Ora) | undefined;
  if (tty && !opts.quiet) void import('ora').then((m) => (makeSpinner = m.default));
  let timer: NodeJS.Timeout | undefined;
  let seq = 0;

  const refresh = () => {
    const now = Date.now();
    const units = [...running.values()];
    if (tty) {
      if (!spinner && !makeSpinner) return; // still loading; the next tick shows it
      const text = units.map((u) => describeUnit(u, now)).join('  ') || 'working';
      if (spinner) spinner.text = text;
      else spinner = makeSpinner!({ stream: out as NodeJS.WriteStream, discardStdin: false, text }).start();
    } else {
      for (const u of units) write(`  ${describeUnit(u, now)}`);
    }
  };
  const ensureTimer = () => {
    if (opts.quiet || timer) return;
    timer = setInterval(refresh, tty ? 200 : (opts.interval ?? 5) * 1000);
    timer.unref();
  };
  const finishLine = (line: string) => {
    if (opts.quiet) return;
    // The spinner line is cleared, the finished line printed plainly, and the spinner redrawn below.
    if (spinner) {
      spinner.stop();
      spinner = undefined;
      write(line);
      if (running.size) refresh();
    } else {
      write(line);
    }
  };

  return {
    start(id, label, total) {
      const key = `${id}#${seq++}`;
      const unit: Unit = { id, label, total, done: 0, started: Date.now() };
      running.set(key, unit);
      ensureTimer();
      const progress: Progress = {
        advance(n) {
          unit.done += n;
        },
        reset(n = 0) {
          unit.done = n;
        },
        done(note) {
          if (!running.delete(key)) return;
          finishLine(`${id} ${note ?? `${label} done`}${unit.total !== undefined && !note ? ` (${human(unit.total)})` : ''}`);
        },
        fail(note) {
          if (!running.delete(key)) return;
          finishLine(`${id} ${label} failed${note ? `: ${note}` : ''}`);
        },
      };
      return progress;
    },
    info(message) {
      if (!opts.quiet) finishLine(message);
    },
    debug(message) {
      if (opts.debug) out.write(`debug: ${message}\n`);
    },
    close() {
      if (timer) clearInterval(timer);
      timer = undefined;
      spinner?.stop();
      spinner = undefined;
    },
  };
}
