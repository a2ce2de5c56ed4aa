/**
 * Shared by the push and pull benchmarks: running a command while measuring its wall time, CPU
 * time and peak memory; this machine's sha256 speed; inputs of a guaranteed compressed size;
 * temp-dir and child-process bookkeeping so that Ctrl-C or an error leaves nothing behind.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomFillSync } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeOciLayout, type GeneratedImage } from './generate.js';

export const KiB = 1024;
export const MiB = 1024 * KiB;
export const MB = 1e6;
export const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
export const CLI = join(ROOT, 'bin', 'tarpush');
export const SKOPEO = '/usr/bin/skopeo';
const GNU_TIME = '/usr/bin/time';

export interface Measured {
  ok: boolean;
  code: number | null;
  /** Seconds, measured here with a monotonic clock. */
  wall: number;
  /** User + system CPU seconds of the command and everything it waited for. */
  cpu: number;
  /** Peak resident set size in MiB (the largest process of the tree; see measure()). */
  rssMiB: number;
  stdout: string;
  stderr: string;
}

const live = new Set<ChildProcess>();

/** Kills every command measure() is still running (Ctrl-C, a failed step). */
export function killRunning(): void {
  for (const c of live) {
    try {
      if (c.pid !== undefined) process.kill(-c.pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
  live.clear();
}

/** Resident memory (kB) of `pid` and all its descendants right now, from /proc. */
function treeRssKiB(pid: number): number {
  let total = 0;
  const stack = [pid];
  while (stack.length) {
    const p = stack.pop()!;
    try {
      const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${p}/status`, 'utf8'));
      if (m) total += Number(m[1]);
      for (const t of readdirSync(`/proc/${p}/task`)) {
        const kids = readFileSync(`/proc/${p}/task/${t}/children`, 'utf8').trim();
        if (kids) for (const k of kids.split(/\s+/)) stack.push(Number(k));
      }
    } catch {
      // exited between the reads
    }
  }
  return total;
}

/**
 * Runs `cmd` and measures it. Peak RSS comes from GNU time's %M when /usr/bin/time exists
 * (getrusage of the waited-for tree: the peak of its largest process, which for tarpush and
 * skopeo — one process each, threads included — is the whole footprint). Without GNU time the
 * summed VmRSS of the child and its descendants is polled every 50 ms, which can miss short
 * spikes. The command runs in its own process group so killRunning() reaches all of it.
 */
export function measure(cmd: string[], opts: { env?: NodeJS.ProcessEnv; scratch: string }): Promise<Measured> {
  const useTime = existsSync(GNU_TIME);
  const timeFile = join(opts.scratch, `time-${process.pid}-${process.hrtime.bigint()}.txt`);
  const argv = useTime ? [GNU_TIME, '-o', timeFile, '-f', '%U %S %M', ...cmd] : cmd;
  const started = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), {
      env: { ...process.env, ...opts.env },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    live.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
    let peakKiB = 0;
    let ticks = 0;
    const poll = useTime
      ? undefined
      : setInterval(() => {
          if (child.pid === undefined) return;
          peakKiB = Math.max(peakKiB, treeRssKiB(child.pid));
          try {
            const stat = readFileSync(`/proc/${child.pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
            ticks = Number(stat[11]) + Number(stat[12]) + Number(stat[13]) + Number(stat[14]);
          } catch {
            // exited
          }
        }, 50);
    child.on('error', (e) => {
      live.delete(child);
      if (poll) clearInterval(poll);
      reject(e);
    });
    child.on('close', (code) => {
      live.delete(child);
      if (poll) clearInterval(poll);
      const wall = Number(process.hrtime.bigint() - started) / 1e9;
      let cpu = ticks / 100;
      if (useTime) {
        try {
          const line = readFileSync(timeFile, 'utf8').trim().split('\n').pop()!;
          const [u, s, m] = line.split(' ').map(Number);
          cpu = u! + s!;
          peakKiB = m!;
        } catch {
          // killed before GNU time wrote its line: keep the wall time only
        }
        rmSync(timeFile, { force: true });
      }
      resolve({ ok: code === 0, code, wall, cpu, rssMiB: peakKiB / 1024, stdout, stderr });
    });
  });
}

/** Like measure(), but a failing command is an error carrying its stderr. */
export async function mustRun(what: string, cmd: string[], opts: { env?: NodeJS.ProcessEnv; scratch: string }): Promise<Measured> {
  const m = await measure(cmd, opts);
  if (!m.ok) throw new Error(`${what} failed (exit ${m.code}): ${firstLine(m.stderr || m.stdout)}`);
  return m;
}

export function firstLine(s: string): string {
  return (s.trim().split('\n').find((l) => l.trim()) ?? '').slice(0, 200);
}

/** This machine's sha256 speed (MB/s) with Node crypto over one in-memory buffer of `mib` MiB. */
export function sha256Throughput(mib = 256): number {
  const buf = Buffer.allocUnsafe(mib * MiB);
  randomFillSync(buf);
  createHash('sha256').update(buf.subarray(0, 16 * MiB)).digest();
  let best = 0;
  for (let i = 0; i < 3; i++) {
    const t = process.hrtime.bigint();
    createHash('sha256').update(buf).digest();
    const s = Number(process.hrtime.bigint() - t) / 1e9;
    best = Math.max(best, buf.length / MB / s);
  }
  return best;
}

/**
 * An OCI layout whose gzip layers add up to at least `minCompressed` bytes. How well the
 * generated content compresses is only known afterwards, so a layout that comes out short is
 * regenerated once with proportionally more content.
 */
export async function ociLayoutAtLeast(
  dir: string,
  minCompressed: number,
  opts: { layers: number; seed: number; repoTag: string },
  log: (s: string) => void,
): Promise<GeneratedImage & { compressed: number; uncompressed: number }> {
  // gzip -6 leaves about half of the generated mix; aim a little above the target.
  let factor = 2.2;
  for (let attempt = 1; ; attempt++) {
    rmSync(dir, { recursive: true, force: true });
    const image = await writeOciLayout(dir, { totalSize: Math.ceil(minCompressed * factor), ...opts });
    const compressed = image.layers.reduce((a, l) => a + (l.compressedSize ?? 0), 0);
    const uncompressed = image.layers.reduce((a, l) => a + l.size, 0);
    if (compressed >= minCompressed || attempt >= 3) return { ...image, compressed, uncompressed };
    log(`  gzip layers came to ${fmt(compressed / MiB)} MiB, below ${fmt(minCompressed / MiB)} MiB: regenerating larger`);
    factor *= (minCompressed / compressed) * 1.03;
  }
}

/** Temp directories removed by cleanupDirs() (also on Ctrl-C). */
const dirs = new Set<string>();

export function tempDir(prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  dirs.add(d);
  return d;
}

export function cleanupDirs(): void {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  dirs.clear();
}

/**
 * Makes Ctrl-C, SIGTERM and a failure in `body` run `cleanup` (stop servers) and remove the temp
 * directories, with the measured commands killed first so nothing keeps writing into them.
 */
export async function withCleanup(name: string, cleanup: () => Promise<void>, body: () => Promise<void>): Promise<void> {
  let cleaning: Promise<void> | undefined;
  const doCleanup = () =>
    (cleaning ??= (async () => {
      killRunning();
      try {
        await cleanup();
      } finally {
        cleanupDirs();
      }
    })());
  const onSignal = (sig: NodeJS.Signals) => {
    process.stderr.write(`\n${name}: ${sig}, cleaning up ...\n`);
    void doCleanup().finally(() => process.exit(sig === 'SIGINT' ? 130 : 143));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    await body();
  } finally {
    await doCleanup();
  }
}

export function fmt(n: number, digits = 1): string {
  return Number.isFinite(n) ? n.toFixed(digits) : '-';
}

/** A plain-text table: first and last column left-aligned, the rest right-aligned. */
export function table(head: string[], rows: string[][]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === 0 || i === cells.length - 1 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

export function loadAverage(): string {
  try {
    return readFileSync('/proc/loadavg', 'utf8').trim().split(' ').slice(0, 3).join(' ');
  } catch {
    return loadavg()
      .map((l) => l.toFixed(2))
      .join(' ');
  }
}

export function verdict(ok: boolean): string {
  return ok ? 'PASS' : 'FAIL';
}

export function sha256Hex(b: Buffer | string): string {
  return createHash('sha256').update(b).digest('hex');
}

export function log(s: string): void {
  process.stderr.write(`${s}\n`);
}
