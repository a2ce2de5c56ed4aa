/**
 * How fast `tarpush digest` is, and what it costs in memory, on a generated image of realistic
 * content. Compares 1 worker with all, cold with warm compression cache, plain with gzipped
 * archive, and an archive whose layers are already gzipped (hashing only) with this machine's
 * raw sha256 speed. The same work is also timed through the library directly (gzipDescribe), so
 * the bench gives numbers even when the CLI cannot run.
 *
 *   node dist/bench/digest.js [--size-mib 512] [--layers 5] [--repeat 1] [--no-skopeo] [--keep]
 *
 * --repeat N runs every scenario N times and keeps the fastest (peak RSS: the highest), which
 * makes speed-ups readable on a machine that other work is also using.
 */
import { spawn } from 'node:child_process';
import { createHash, randomFillSync } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipFile, writeDockerArchive } from './lib/generate.js';

const MiB = 1024 * 1024;
const MB = 1e6;
const TIME = '/usr/bin/time';
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CLI = join(ROOT, 'bin', 'tarpush');
const DESCRIBE = fileURLToPath(new URL('./lib/describe-archive.js', import.meta.url));

interface Args {
  sizeMiB: number;
  layers: number;
  skopeo: boolean;
  keep: boolean;
  repeat: number;
}

function parseArgs(argv: string[]): Args {
  const args: Args = { sizeMiB: 512, layers: 5, skopeo: true, keep: false, repeat: 1 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--size-mib') args.sizeMiB = Number(argv[++i]);
    else if (a === '--layers') args.layers = Number(argv[++i]);
    else if (a === '--repeat') args.repeat = Number(argv[++i]);
    else if (a === '--no-skopeo') args.skopeo = false;
    else if (a === '--keep') args.keep = true;
    else {
      console.error(`digest bench: unknown argument ${a}`);
      process.exit(2);
    }
  }
  if (!(args.sizeMiB > 0) || !(args.layers >= 1) || !Number.isInteger(args.repeat) || args.repeat < 1) {
    console.error('digest bench: --size-mib, --layers and --repeat must be positive numbers');
    process.exit(2);
  }
  return args;
}

interface Measured {
  ok: boolean;
  wall: number;
  cpu: number;
  rssMiB: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs a command and measures wall time, CPU time and peak RSS — with GNU time when present,
 * else by polling the child's /proc status (VmHWM) and stat (utime+stime).
 */
function measure(cmd: string[], env: NodeJS.ProcessEnv, tmp: string): Promise<Measured> {
  const useTime = existsSync(TIME);
  const timeFile = join(tmp, `time-${process.hrtime.bigint()}.txt`);
  const argv = useTime ? [TIME, '-o', timeFile, '-f', '%e %U %S %M', ...cmd] : cmd;
  const started = process.hrtime.bigint();
  return new Promise((resolve) => {
    const child = spawn(argv[0]!, argv.slice(1), { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    let hwmKiB = 0;
    let ticks = 0;
    const poll = useTime
      ? undefined
      : setInterval(() => {
          try {
            const status = readFileSync(`/proc/${child.pid}/status`, 'utf8');
            const m = /VmHWM:\s+(\d+) kB/.exec(status);
            if (m) hwmKiB = Math.max(hwmKiB, Number(m[1]));
            const stat = readFileSync(`/proc/${child.pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
            ticks = Number(stat[11]) + Number(stat[12]);
          } catch {
            // the child has exited
          }
        }, 20);
    child.on('close', (code) => {
      if (poll) clearInterval(poll);
      const wall = Number(process.hrtime.bigint() - started) / 1e9;
      let result: Measured = { ok: code === 0, wall, cpu: ticks / 100, rssMiB: hwmKiB / 1024, stdout, stderr };
      if (useTime) {
        try {
          const line = readFileSync(timeFile, 'utf8').trim().split('\n').pop()!;
          const [e, u, s, m] = line.split(' ').map(Number);
          result = { ...result, wall: e!, cpu: u! + s!, rssMiB: m! / 1024 };
          rmSync(timeFile, { force: true });
        } catch {
          // keep the wall-clock measurement
        }
      }
      resolve(result);
    });
  });
}

/** This machine's sha256 speed on one large in-memory buffer: the ceiling for any hashing path. */
function sha256Throughput(): number {
  const buf = Buffer.allocUnsafe(64 * MiB);
  randomFillSync(buf);
  createHash('sha256').update(buf.subarray(0, 8 * MiB)).digest();
  const rounds = 6;
  const t = process.hrtime.bigint();
  for (let i = 0; i < rounds; i++) createHash('sha256').update(buf).digest();
  const s = Number(process.hrtime.bigint() - t) / 1e9;
  return (rounds * buf.length) / MB / s;
}

interface Row {
  name: string;
  bytes: number;
  m?: Measured;
  note?: string;
}

function fmt(n: number, digits = 1): string {
  return Number.isFinite(n) ? n.toFixed(digits) : '-';
}

function table(rows: Row[]): string {
  const head = ['scenario', 'data MB', 'wall s', 'MB/s', 'CPU s', 'peak RSS MiB', 'result'];
  const body = rows.map((r) => {
    if (!r.m) return [r.name, fmt(r.bytes / MB), '-', '-', '-', '-', r.note ?? 'skipped'];
    const firstLine = (r.m.ok ? r.m.stdout : r.m.stderr).trim().split('\n')[0] ?? '';
    const result = r.m.ok ? (r.note ?? short(firstLine)) : `FAILED: ${firstLine.slice(0, 70)}`;
    return [r.name, fmt(r.bytes / MB), fmt(r.m.wall, 2), fmt(r.bytes / MB / r.m.wall), fmt(r.m.cpu, 2), fmt(r.m.rssMiB), result];
  });
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 || i === cells.length - 1 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line)].join('\n');
}

function short(s: string): string {
  return s.length > 30 ? `${s.slice(0, 19)}…${s.slice(-10)}` : s;
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const tmp = mkdtempSync(join(tmpdir(), 'tarpush-bench-digest-'));
  const cleanup = () => {
    if (!args.keep) rmSync(tmp, { recursive: true, force: true });
  };
  process.once('SIGINT', () => {
    cleanup();
    process.exit(130);
  });
  try {
    const cores = availableParallelism();
    const log = (s: string) => process.stderr.write(`${s}\n`);
    const total = Math.round(args.sizeMiB * MiB);

    log(`generating a ${args.sizeMiB} MiB legacy docker-save archive (${args.layers} layers) in ${tmp} ...`);
    const archive = join(tmp, 'image.tar');
    let t = Date.now();
    const image = await writeDockerArchive(archive, { totalSize: total, layers: args.layers, seed: 7 });
    log(`  ${((Date.now() - t) / 1000).toFixed(1)} s`);
    const layerBytes = image.layers.reduce((a, l) => a + l.size, 0);

    log('generating the same image as archive with already-gzipped layers ...');
    const gzLayers = join(tmp, 'image-gzlayers.tar');
    t = Date.now();
    const gzImage = await writeDockerArchive(gzLayers, { totalSize: total, layers: args.layers, seed: 7, gzipLayers: true });
    log(`  ${((Date.now() - t) / 1000).toFixed(1)} s`);
    const gzLayerBytes = gzImage.layers.reduce((a, l) => a + (l.compressedSize ?? 0), 0);

    log('gzipping the archive ...');
    const archiveGz = join(tmp, 'image.tar.gz');
    await gzipFile(archive, archiveGz);

    log('measuring sha256 ...');
    const shaMBs = sha256Throughput();

    const node = process.execPath;
    const cold = (n: string) => ({ TARPUSH_CACHE_DIR: join(tmp, `cache-${n}`), TMPDIR: tmp });
    const startup = await measure([node, CLI, '--help'], cold('startup'), tmp);
    const cliWorks = startup.ok && (await measure([node, CLI, 'digest', gzLayers], cold('probe'), tmp)).ok;
    const rows: Row[] = [];
    const run = async (name: string, bytes: number, cmd: string[], env: NodeJS.ProcessEnv, note?: string) => {
      let best: Measured | undefined;
      let peak = 0;
      for (let i = 0; i < args.repeat; i++) {
        log(`running: ${name}${args.repeat > 1 ? ` (${i + 1}/${args.repeat})` : ''}`);
        // Cold-cache scenarios must start cold every time.
        if (env.TARPUSH_CACHE_DIR && !name.includes('warm')) rmSync(env.TARPUSH_CACHE_DIR, { recursive: true, force: true });
        const next = await measure(cmd, env, tmp);
        peak = Math.max(peak, next.rssMiB);
        if (!next.ok) {
          best = next;
          break;
        }
        if (!best || next.wall < best.wall) best = next;
      }
      const m: Measured = { ...best!, rssMiB: peak };
      const row: Row = { name, bytes, m, ...(note ? { note } : {}) };
      rows.push(row);
      return row;
    };

    let cli1: Row | undefined;
    let cliN: Row | undefined;
    let cliWarm: Row | undefined;
    let cliGz: Row | undefined;
    let cliHash: Row | undefined;
    if (cliWorks) {
      cli1 = await run('cli digest, cold cache, 1 worker', layerBytes, [node, CLI, 'digest', archive], { ...cold('1'), TARPUSH_WORKERS: '1' });
      cliN = await run(`cli digest, cold cache, ${cores} workers`, layerBytes, [node, CLI, 'digest', archive], cold('n'));
      cliWarm = await run('cli digest, warm cache', layerBytes, [node, CLI, 'digest', archive], cold('n'));
      cliGz = await run('cli digest of archive.tar.gz, cold', layerBytes, [node, CLI, 'digest', archiveGz], cold('gz'));
      cliHash = await run('cli digest, gzipped layers (hash only)', gzLayerBytes, [node, CLI, 'digest', gzLayers], cold('h'));
    } else {
      rows.push({ name: 'cli digest', bytes: layerBytes, note: `CLI unavailable: ${(startup.stderr.trim().split('\n')[0] ?? '').slice(0, 60)}` });
    }
    const lib1 = await run('gzipDescribe (library), 1 worker', layerBytes, [node, DESCRIBE, 'gzip', archive], { TARPUSH_WORKERS: '1' }, 'ok');
    const libN = await run(`gzipDescribe (library), ${cores} workers`, layerBytes, [node, DESCRIBE, 'gzip', archive], {}, 'ok');
    const libHash = await run('sha256 of gzipped layers (library)', gzLayerBytes, [node, DESCRIBE, 'hash', gzLayers], {}, 'ok');
    // Compressed sizes, so speed can be weighed against ratio.
    for (const r of [lib1, libN]) {
      if (!r.m?.ok) continue;
      const gz = r.m.stdout.trim().split('\n').reduce((a, l) => a + (JSON.parse(l) as { size: number }).size, 0);
      r.note = `ok, gzip ${fmt(gz / MB)} MB`;
    }
    if (args.skopeo && existsSync('/usr/bin/skopeo')) {
      const dest = join(tmp, 'skopeo-oci');
      const r = await run(
        'skopeo copy to oci --dest-compress (ref.)',
        layerBytes,
        ['/usr/bin/skopeo', 'copy', '-q', `docker-archive:${archive}`, `oci:${dest}:latest`, '--dest-compress'],
        {},
        'ok',
      );
      if (r.m?.ok) {
        const blobs = join(dest, 'blobs', 'sha256');
        const sizes = readdirSync(blobs).map((f) => statSync(join(blobs, f)).size);
        // Layers are the big blobs; config, manifest and index are a few KB.
        r.note = `ok, gzip ${fmt(sizes.filter((n) => n > 64 * 1024).reduce((a, b) => a + b, 0) / MB)} MB`;
      }
      rmSync(dest, { recursive: true, force: true });
    }

    // Consistency: the same image must give the same digests however it is computed.
    const checks: string[] = [];
    const same = (label: string, rs: Array<Row | undefined>) => {
      const outs = rs.filter((r): r is Row => !!r?.m?.ok).map((r) => r.m!.stdout.trim());
      if (outs.length < 2) return;
      checks.push(`${outs.every((o) => o === outs[0]) ? 'OK  ' : 'FAIL'} ${label}`);
    };
    same('cli digest identical for 1 worker, all workers, warm cache and archive.tar.gz', [cli1, cliN, cliWarm, cliGz]);
    same('library layer digests identical for 1 and all workers', [lib1, libN]);
    if (libN.m?.ok) {
      const diffIds = libN.m.stdout.trim().split('\n').map((l) => (JSON.parse(l) as { diffId: string }).diffId);
      const expected = image.layers.map((l) => l.diffId);
      checks.push(`${JSON.stringify(diffIds) === JSON.stringify(expected) ? 'OK  ' : 'FAIL'} library diff_ids match the generated config`);
    }

    const archiveMB = statSync(archive).size / MB;
    console.log(`\ntarpush digest bench: ${fmt(archiveMB)} MB legacy archive, ${args.layers} layers (${fmt(layerBytes / MB)} MB of layers, ${fmt(gzLayerBytes / MB)} MB gzipped), ${cores} cores, node ${process.version}`);
    console.log(`MB = 10^6 bytes; MB/s = layer bytes (uncompressed, or gzipped for hash-only rows) / wall time`);
    const load = loadavg()[0]!;
    const busy = load > cores * 0.75 ? ' (the machine was busy: wall times are inflated, CPU s is the steadier figure; try --repeat 3)' : '';
    console.log(`best of ${args.repeat} run(s) each; load average at the end: ${fmt(load, 2)}${busy}\n`);
    console.log(table(rows));
    console.log(`\nsha256 on one in-memory buffer: ${fmt(shaMBs)} MB/s; CLI start-up (--help): ${startup.ok ? `${fmt(startup.wall, 2)} s` : 'n/a'}`);

    const speedup = (a?: Row, b?: Row) => (a?.m?.ok && b?.m?.ok ? a.m.wall / b.m.wall : NaN);
    const verdict = (ok: boolean) => (ok ? 'meets target' : 'BELOW target');
    const su = [
      ['cli', speedup(cli1, cliN)],
      ['library', speedup(lib1, libN)],
    ] as const;
    console.log('\nsummary');
    for (const [what, s] of su) {
      if (Number.isFinite(s)) console.log(`  ${what}: ${cores} workers vs 1: ${fmt(s, 2)}x (target >= 1.8x on 2 cores): ${verdict(s >= 1.8)}`);
    }
    const rssRows = rows.filter((r) => r.m?.ok && (r.name.startsWith('cli') || r.name.startsWith('gzipDescribe')));
    if (rssRows.length) {
      const peak = Math.max(...rssRows.map((r) => r.m!.rssMiB));
      console.log(`  peak RSS of tarpush runs: ${fmt(peak)} MiB (target <= 150 MiB): ${verdict(peak <= 150)}`);
    }
    for (const r of [cliHash, libHash]) {
      if (!r?.m?.ok) continue;
      const rate = r.bytes / MB / r.m.wall;
      const work = r.m.wall - startup.wall;
      let extra = '';
      if (startup.ok && r === cliHash) {
        extra =
          work > 0.5 * r.m.wall
            ? `; without start-up ${fmt((100 * (r.bytes / MB / work)) / shaMBs, 0)}%`
            : '; run too short to subtract start-up reliably (use a larger --size-mib)';
      }
      console.log(`  ${r.name}: ${fmt(rate)} MB/s = ${fmt((100 * rate) / shaMBs, 0)}% of sha256 (target >= 70%): ${verdict(rate >= 0.7 * shaMBs)}${extra}`);
    }
    for (const c of checks) console.log(`  ${c}`);
    if (!cliWorks) console.log('  note: bin/tarpush did not run, only library numbers are shown');
  } finally {
    cleanup();
  }
}

main().catch((e: unknown) => {
  console.error(`digest bench: ${(e as Error).message}`);
  process.exit(1);
});
