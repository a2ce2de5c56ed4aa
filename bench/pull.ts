/**
 * `tarpush pull` against `skopeo copy … docker-archive:` from the real CNCF registry on loopback,
 * and `tarpush verify` against this machine's sha256 speed:
 *   - an OCI image whose gzip layers total at least --size-mib is put into a fresh registry
 *     (by skopeo, an independent client), then pulled by both tools, alternating which goes
 *     first, best of --runs (default 2); target tarpush <= 0.7x skopeo, peak RSS <= 150 MiB.
 *     skopeo's docker-archive output stores layers uncompressed, so skopeo also decompresses;
 *     tarpush keeps the blobs as served.
 *   - `tarpush verify` of the pulled archive: gzip layers, so verify hashes each blob AND
 *     decompresses it to check its diff_id — reported as is;
 *   - `tarpush verify` of a legacy docker save with --size-mib of uncompressed layers (digest =
 *     diff_id, one hash per byte): target >= 70% of sha256 throughput.
 *
 *   npm run build && node dist/bench/pull.js [--size-mib 512] [--layers 5] [--runs 2]
 */
import { mkdirSync, rmSync, statSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { startRegistry, type TestRegistry } from '../test/helpers/registry.js';
import { writeDockerArchive } from './lib/generate.js';
import {
  CLI, MB, MiB, SKOPEO, cleanupDirs, firstLine, fmt, loadAverage, log, measure, mustRun, ociLayoutAtLeast,
  sha256Hex, sha256Throughput, table, tempDir, verdict, withCleanup, type Measured,
} from './lib/measure.js';

interface Args {
  sizeMiB: number;
  layers: number;
  runs: number;
}

function parseArgs(argv: string[]): Args {
  const args: Args = { sizeMiB: 512, layers: 5, runs: 2 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const num = () => Number(argv[++i]);
    if (a === '--size-mib') args.sizeMiB = num();
    else if (a === '--layers') args.layers = num();
    else if (a === '--runs') args.runs = num();
    else {
      console.error(`pull bench: unknown argument ${a}\nusage: node dist/bench/pull.js [--size-mib 512] [--layers 5] [--runs 2]`);
      process.exit(2);
    }
  }
  if (!(args.sizeMiB > 0) || !(args.layers >= 1) || !(args.runs >= 1)) {
    console.error('pull bench: --size-mib, --layers and --runs must be positive numbers');
    process.exit(2);
  }
  return args;
}

const TARGET = { pull: 0.7, rssMiB: 150, verifyShare: 0.7 };
const REPO = 'bench/x';
const TAG = '1';

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const loadStart = loadAverage();
  let registry: TestRegistry | undefined;
  await withCleanup(
    'pull bench',
    async () => {
      await registry?.stop();
    },
    async () => {
      const tmp = tempDir('tarpush-bench-pull-');
      const scratch = join(tmp, 'scratch');
      mkdirSync(scratch);
      const env = {
        TARPUSH_CACHE_DIR: join(tmp, 'cache'),
        TARPUSH_STATE_DIR: join(tmp, 'state'),
        TMPDIR: scratch,
      };
      const size = Math.round(args.sizeMiB * MiB);
      log(`load average at start: ${loadStart}`);

      log(`generating an OCI layout with >= ${args.sizeMiB} MiB of gzip layers (${args.layers} layers) in ${tmp} ...`);
      let t = Date.now();
      const ociDir = join(tmp, 'oci');
      const oci = await ociLayoutAtLeast(ociDir, size, { layers: args.layers, seed: 21, repoTag: `${REPO}:${TAG}` }, log);
      log(`  ${fmt(oci.compressed / MiB)} MiB gzip (${fmt(oci.uncompressed / MiB)} MiB uncompressed), ${fmt((Date.now() - t) / 1000)} s`);

      registry = await startRegistry();
      const ref = `${registry.host}/${REPO}:${TAG}`;
      log(`seeding ${ref} with skopeo ...`);
      await mustRun('skopeo copy (seed)', [SKOPEO, 'copy', '-q', '--dest-tls-verify=false', `oci:${ociDir}:${TAG}`, `docker://${ref}`], { scratch });
      const raw = await mustRun('skopeo inspect --raw', [SKOPEO, 'inspect', '--raw', '--tls-verify=false', `docker://${ref}`], { scratch });
      const remoteDigest = `sha256:${sha256Hex(Buffer.from(raw.stdout))}`;
      // The layout's blobs are no longer needed: free the disk for the pulled archives.
      rmSync(ociDir, { recursive: true, force: true });

      const outT = join(tmp, 'tarpush.tar');
      const outS = join(tmp, 'skopeo.tar');
      const tarpushPull = () => measure([process.execPath, CLI, 'pull', ref, outT, '-q'], { env, scratch });
      const skopeoPull = () => measure([SKOPEO, 'copy', '-q', '--src-tls-verify=false', `docker://${ref}`, `docker-archive:${outS}`], { scratch });
      const tp: Measured[] = [];
      const sp: Measured[] = [];
      let tarpushPrinted = '';
      for (let run = 1; run <= args.runs; run++) {
        const steps = [
          async () => {
            rmSync(outT, { force: true });
            log(`tarpush pull (run ${run}/${args.runs}) ...`);
            const m = await tarpushPull();
            if (!m.ok) throw new Error(`tarpush pull failed (exit ${m.code}): ${firstLine(m.stderr || m.stdout)}`);
            tarpushPrinted = m.stdout.trim();
            tp.push(m);
          },
          async () => {
            rmSync(outS, { force: true });
            log(`skopeo copy to docker-archive (run ${run}/${args.runs}) ...`);
            const m = await skopeoPull();
            if (!m.ok) throw new Error(`skopeo copy to docker-archive failed (exit ${m.code}): ${firstLine(m.stderr || m.stdout)}`);
            sp.push(m);
          },
        ];
        for (const step of run % 2 === 1 ? steps : steps.reverse()) await step();
      }
      await registry.stop();
      registry = undefined;
      const bestOf = (ms: Measured[]) => ms.reduce((a, b) => (b.wall < a.wall ? b : a));
      const tBest = bestOf(tp);
      const sBest = bestOf(sp);
      const outTBytes = statSync(outT).size;
      const outSBytes = statSync(outS).size;
      rmSync(outS, { force: true });

      const checks: string[] = [];
      const check = (ok: boolean, what: string) => checks.push(`${ok ? 'OK  ' : 'FAIL'} ${what}`);
      check(tarpushPrinted.endsWith(`@${remoteDigest}`), `tarpush pull printed ${tarpushPrinted}; the registry's manifest is ${remoteDigest}`);
      const offline = await measure([process.execPath, CLI, 'digest', outT], { env, scratch });
      check(offline.ok && offline.stdout.trim() === remoteDigest, `tarpush digest of the pulled archive = the registry's digest (${offline.ok ? offline.stdout.trim() : firstLine(offline.stderr)})`);

      log('measuring sha256 throughput (256 MiB buffer) ...');
      const shaMBs = sha256Throughput(256);
      const startup = await measure([process.execPath, CLI, '--help'], { env, scratch });

      log('tarpush verify of the pulled archive (gzip layers) ...');
      const verifyGz = await measure([process.execPath, CLI, 'verify', outT, '-q'], { env, scratch });
      check(verifyGz.ok, `tarpush verify of the pulled archive: ${firstLine(verifyGz.stdout.trim().split('\n').pop() ?? '') || firstLine(verifyGz.stderr)}`);
      rmSync(outT, { force: true });

      log(`generating a legacy docker-save archive with ${args.sizeMiB} MiB of uncompressed layers ...`);
      t = Date.now();
      const legacyTar = join(tmp, 'legacy.tar');
      const legacy = await writeDockerArchive(legacyTar, { totalSize: size, layers: args.layers, seed: 22, repoTag: `${REPO}:${TAG}` });
      const legacyBytes = legacy.layers.reduce((a, l) => a + l.size, 0);
      log(`  ${fmt((Date.now() - t) / 1000)} s`);
      log('tarpush verify of the legacy archive (uncompressed layers) ...');
      const verifyRaw: Measured[] = [];
      for (let i = 0; i < 2; i++) {
        const m = await measure([process.execPath, CLI, 'verify', legacyTar, '-q'], { env, scratch });
        verifyRaw.push(m);
        if (!m.ok) break;
      }
      const vRaw = bestOf(verifyRaw);
      check(vRaw.ok, `tarpush verify of the legacy archive: ${firstLine(vRaw.stdout.trim().split('\n').pop() ?? '') || firstLine(vRaw.stderr)}`);

      // ---- report ----
      const cores = availableParallelism();
      const ratio = tBest.wall / sBest.wall;
      console.log(
        `\ntarpush pull bench: ${args.layers} layers, ${fmt(oci.compressed / MiB)} MiB gzip (${fmt(oci.uncompressed / MiB)} MiB uncompressed); ` +
          `${cores} cores; node ${process.version}; best of ${args.runs} per tool, alternating which goes first`,
      );
      console.log(`load average: at start ${loadStart}, at end ${loadAverage()} (1/5/15 min)\n`);
      const runsOf = (ms: Measured[]) => ms.map((m) => fmt(m.wall, 2)).join(' / ');
      console.log(
        table(
          ['pull', 'tarpush s', 'skopeo s', 'ratio', 'tp CPU s', 'sk CPU s', 'tp RSS MiB', 'sk RSS MiB', 'target', 'result'],
          [
            [
              'registry -> docker-loadable tar',
              fmt(tBest.wall, 2), fmt(sBest.wall, 2), fmt(ratio, 2), fmt(tBest.cpu, 1), fmt(sBest.cpu, 1),
              fmt(tBest.rssMiB, 0), fmt(sBest.rssMiB, 0), `ratio <= ${TARGET.pull}`, verdict(ratio <= TARGET.pull),
            ],
          ],
        ),
      );
      const peak = Math.max(...tp.map((m) => m.rssMiB));
      console.log(`all runs: tarpush ${runsOf(tp)} s, skopeo ${runsOf(sp)} s`);
      console.log(`output: tarpush ${fmt(outTBytes / MB)} MB (blobs as served, gzip), skopeo ${fmt(outSBytes / MB)} MB (layers decompressed)`);
      console.log(`tarpush peak RSS over pull runs: ${fmt(peak, 0)} MiB (target <= ${TARGET.rssMiB} MiB): ${verdict(peak <= TARGET.rssMiB)}`);

      console.log(`\nsha256 (node crypto, one 256 MiB buffer): ${fmt(shaMBs)} MB/s; tarpush start-up (--help): ${startup.ok ? `${fmt(startup.wall, 2)} s` : 'n/a'}`);
      const net = (m: Measured) => Math.max(1e-3, m.wall - (startup.ok ? startup.wall : 0));
      const vrows: string[][] = [];
      const gzRate = oci.compressed / MB / verifyGz.wall;
      const gunzipRate = oci.uncompressed / MB / verifyGz.wall;
      vrows.push([
        'pulled archive, gzip layers',
        fmt(oci.compressed / MB), fmt(verifyGz.wall, 2), fmt(verifyGz.cpu, 1), fmt(verifyGz.rssMiB, 0),
        `${fmt(gzRate)} gz / ${fmt(gunzipRate)} raw`,
        `${fmt((100 * gzRate) / shaMBs, 0)}%`,
        `${fmt((100 * (oci.compressed / MB / net(verifyGz))) / shaMBs, 0)}%`,
        '(info: hash + gunzip + hash)',
      ]);
      const rawRate = legacyBytes / MB / vRaw.wall;
      vrows.push([
        'docker save, uncompressed layers',
        fmt(legacyBytes / MB), fmt(vRaw.wall, 2), fmt(vRaw.cpu, 1), fmt(vRaw.rssMiB, 0),
        fmt(rawRate), `${fmt((100 * rawRate) / shaMBs, 0)}%`,
        `${fmt((100 * (legacyBytes / MB / net(vRaw))) / shaMBs, 0)}%`,
        `>= ${100 * TARGET.verifyShare}%: ${verdict(rawRate >= TARGET.verifyShare * shaMBs)}`,
      ]);
      console.log(table(['verify', 'layer MB', 'wall s', 'CPU s', 'RSS MiB', 'MB/s', '% sha256', 'w/o start-up', 'target'], vrows));
      console.log(`verify runs of the docker save: ${runsOf(verifyRaw)} s (best counted)`);
      console.log('MB = 10^6 bytes; the gzip row rates the gzip bytes (and the uncompressed bytes) by wall time');
      console.log('\nchecks');
      for (const c of checks) console.log(`  ${c}`);
    },
  );
}

main().catch((e: unknown) => {
  console.error(`pull bench: ${(e as Error).message}`);
  cleanupDirs();
  process.exit(1);
});
