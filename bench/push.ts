/**
 * `tarpush push` against `skopeo copy` into the real CNCF registry on loopback, on generated
 * images of realistic content:
 *   - an OCI layout whose gzip layers total at least --size-mib (nothing to compress: hashing
 *     and upload only; target tarpush <= 0.8x skopeo),
 *   - a legacy `docker save` archive with --size-mib of uncompressed layers (both tools gzip
 *     them; target tarpush <= 1.0x skopeo), cold and with a warm compression cache,
 *   - a re-push where every blob is already in the registry (target < 1 s),
 * and tarpush's peak RSS (target <= 150 MiB). Every tool pushes each case into a registry of
 * its own, so neither finds blobs the other uploaded.
 *
 *   npm run build && node dist/bench/push.js [--size-mib 512] [--layers 5] [--runs 1] [--jobs N]
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { startRegistry, type TestRegistry } from '../test/helpers/registry.js';
import { writeDockerArchive } from './lib/generate.js';
import {
  CLI, MB, MiB, SKOPEO, cleanupDirs, firstLine, fmt, loadAverage, log, measure, mustRun, ociLayoutAtLeast,
  sha256Hex, table, tempDir, verdict, withCleanup, type Measured,
} from './lib/measure.js';

interface Args {
  sizeMiB: number;
  layers: number;
  runs: number;
  jobs?: number;
}

function parseArgs(argv: string[]): Args {
  const args: Args = { sizeMiB: 512, layers: 5, runs: 1 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const num = () => Number(argv[++i]);
    if (a === '--size-mib') args.sizeMiB = num();
    else if (a === '--layers') args.layers = num();
    else if (a === '--runs') args.runs = num();
    else if (a === '--jobs') args.jobs = num();
    else {
      console.error(`push bench: unknown argument ${a}\nusage: node dist/bench/push.js [--size-mib 512] [--layers 5] [--runs 1] [--jobs N]`);
      process.exit(2);
    }
  }
  if (!(args.sizeMiB > 0) || !(args.layers >= 1) || !(args.runs >= 1) || (args.jobs !== undefined && !(args.jobs >= 1))) {
    console.error('push bench: --size-mib, --layers, --runs and --jobs must be positive numbers');
    process.exit(2);
  }
  return args;
}

const TARGET = { oci: 0.8, legacy: 1.0, repushS: 1.0, rssMiB: 150 };
const REPO = 'bench/x';
const TAG = '1';

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const loadStart = loadAverage();
  const registries = new Set<TestRegistry>();
  const stopAll = async () => {
    await Promise.allSettled([...registries].map((r) => r.stop()));
    registries.clear();
  };
  const fresh = async () => {
    const r = await startRegistry();
    registries.add(r);
    return r;
  };
  const stop = async (r: TestRegistry) => {
    registries.delete(r);
    await r.stop();
  };

  await withCleanup('push bench', stopAll, async () => {
    const tmp = tempDir('tarpush-bench-push-');
    const scratch = join(tmp, 'scratch');
    const env = (cache: string) => ({
      TARPUSH_CACHE_DIR: join(tmp, `cache-${cache}`),
      TARPUSH_STATE_DIR: join(tmp, `state-${cache}`),
      TMPDIR: scratch,
    });
    mkdirSync(scratch);
    const jobs = args.jobs !== undefined ? ['--jobs', String(args.jobs)] : [];
    const tarpushPush = (input: string, reg: TestRegistry, cache: string) =>
      measure([process.execPath, CLI, 'push', input, `${reg.host}/${REPO}:${TAG}`, '-q', ...jobs], { env: env(cache), scratch });
    const skopeoPush = (src: string, reg: TestRegistry) =>
      measure([SKOPEO, 'copy', '-q', '--dest-tls-verify=false', src, `docker://${reg.host}/${REPO}:${TAG}`], { scratch });

    const size = Math.round(args.sizeMiB * MiB);
    log(`load average at start: ${loadStart}`);
    log(`generating an OCI layout with >= ${args.sizeMiB} MiB of gzip layers (${args.layers} layers) in ${tmp} ...`);
    let t = Date.now();
    const ociDir = join(tmp, 'oci');
    const oci = await ociLayoutAtLeast(ociDir, size, { layers: args.layers, seed: 11, repoTag: `${REPO}:${TAG}` }, log);
    log(`  ${fmt(oci.compressed / MiB)} MiB gzip (${fmt(oci.uncompressed / MiB)} MiB uncompressed), ${fmt((Date.now() - t) / 1000)} s`);
    const ociIndex = JSON.parse(readFileSync(join(ociDir, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> };
    const ociDigest = ociIndex.manifests[0]!.digest;

    log(`generating a legacy docker-save archive with ${args.sizeMiB} MiB of uncompressed layers ...`);
    t = Date.now();
    const legacyTar = join(tmp, 'legacy.tar');
    const legacy = await writeDockerArchive(legacyTar, { totalSize: size, layers: args.layers, seed: 12, repoTag: `${REPO}:${TAG}` });
    const legacyBytes = legacy.layers.reduce((a, l) => a + l.size, 0);
    log(`  ${fmt(legacyBytes / MiB)} MiB, ${fmt((Date.now() - t) / 1000)} s`);

    const checks: string[] = [];
    const check = (ok: boolean, what: string) => checks.push(`${ok ? 'OK  ' : 'FAIL'} ${what}`);
    const pushedDigest = (m: Measured) => /@(sha256:[0-9a-f]{64})\s*$/.exec(m.stdout.trim())?.[1];
    /** The registry's manifest for the tag, hashed here: what a pull by digest would get. */
    const remoteDigest = async (reg: TestRegistry) => {
      const m = await measure([SKOPEO, 'inspect', '--raw', '--tls-verify=false', `docker://${reg.host}/${REPO}:${TAG}`], { scratch });
      return m.ok ? `sha256:${sha256Hex(Buffer.from(m.stdout))}` : `(skopeo inspect failed: ${firstLine(m.stderr)})`;
    };
    const skopeoValid = async (reg: TestRegistry, label: string) => {
      const m = await measure([SKOPEO, 'inspect', '--tls-verify=false', `docker://${reg.host}/${REPO}:${TAG}`], { scratch });
      let layers = -1;
      try {
        layers = (JSON.parse(m.stdout) as { Layers: string[] }).Layers.length;
      } catch {
        /* reported below */
      }
      check(m.ok && layers === args.layers, `${label}: skopeo inspect works (${layers} layers)`);
    };

    type Best = { m: Measured; all: Measured[] };
    const best = new Map<string, Best>();
    const keep = (key: string, m: Measured, what: string) => {
      if (!m.ok) throw new Error(`${what} failed (exit ${m.code}): ${firstLine(m.stderr || m.stdout)}`);
      const b = best.get(key);
      best.set(key, { m: !b || m.wall < b.m.wall ? m : b.m, all: [...(b?.all ?? []), m] });
    };

    let tarpushOciDigest: string | undefined;
    let tarpushLegacyDigest: string | undefined;
    // Kept from the last run for the re-push cases.
    let ociReg: TestRegistry | undefined;
    let legacyReg: TestRegistry | undefined;
    let skopeoOciReg: TestRegistry | undefined;

    for (let run = 1; run <= args.runs; run++) {
      const suffix = args.runs > 1 ? ` (run ${run}/${args.runs})` : '';
      const last = run === args.runs;
      // Alternate which tool goes first, so neither always gets the cooler machine.
      const tarpushFirst = run % 2 === 1;

      const regs = { tOci: await fresh(), sOci: await fresh(), tLeg: await fresh(), sLeg: await fresh(), tWarm: await fresh() };
      const cache = `run${run}`;
      const ociPair: Array<() => Promise<void>> = [
        async () => {
          log(`tarpush push OCI layout, cold cache${suffix} ...`);
          const m = await tarpushPush(ociDir, regs.tOci, cache);
          keep('oci/tarpush', m, 'tarpush push of the OCI layout');
          tarpushOciDigest = pushedDigest(m);
        },
        async () => {
          log(`skopeo copy OCI layout${suffix} ...`);
          keep('oci/skopeo', await skopeoPush(`oci:${ociDir}:${TAG}`, regs.sOci), 'skopeo copy of the OCI layout');
        },
      ];
      const legacyPair: Array<() => Promise<void>> = [
        async () => {
          log(`tarpush push legacy archive, cold cache${suffix} ...`);
          const m = await tarpushPush(legacyTar, regs.tLeg, `${cache}-legacy`);
          keep('legacy/tarpush', m, 'tarpush push of the legacy archive');
          tarpushLegacyDigest = pushedDigest(m);
        },
        async () => {
          log(`skopeo copy legacy archive${suffix} ...`);
          keep('legacy/skopeo', await skopeoPush(`docker-archive:${legacyTar}`, regs.sLeg), 'skopeo copy of the legacy archive');
        },
      ];
      for (const pair of [ociPair, legacyPair]) {
        const order = tarpushFirst ? pair : [...pair].reverse();
        for (const step of order) await step();
      }
      log(`tarpush push legacy archive, warm cache, fresh registry${suffix} ...`);
      keep('warm/tarpush', await tarpushPush(legacyTar, regs.tWarm, `${cache}-legacy`), 'warm-cache tarpush push of the legacy archive');

      if (last) {
        ociReg = regs.tOci;
        legacyReg = regs.tLeg;
        skopeoOciReg = regs.sOci;
        check(tarpushOciDigest === ociDigest, `OCI: tarpush printed ${tarpushOciDigest ?? 'nothing'}, the layout's manifest is ${ociDigest}`);
        check((await remoteDigest(regs.tOci)) === ociDigest, 'OCI: the registry serves the layout manifest (tarpush push)');
        check((await remoteDigest(regs.sOci)) === ociDigest, 'OCI: the registry serves the layout manifest (skopeo copy)');
        await skopeoValid(regs.tOci, 'OCI pushed by tarpush');
        await skopeoValid(regs.sOci, 'OCI pushed by skopeo');
        const legRemote = await remoteDigest(regs.tLeg);
        check(tarpushLegacyDigest !== undefined && legRemote === tarpushLegacyDigest, `legacy: tarpush printed ${tarpushLegacyDigest ?? 'nothing'}, the registry serves ${legRemote}`);
        const warmRemote = await remoteDigest(regs.tWarm);
        check(warmRemote === tarpushLegacyDigest, 'legacy: warm-cache push gives the same digest as the cold push');
        await skopeoValid(regs.tLeg, 'legacy pushed by tarpush');
        await skopeoValid(regs.sLeg, 'legacy pushed by skopeo');
        for (const r of [regs.sLeg, regs.tWarm]) await stop(r);
      } else {
        for (const r of Object.values(regs)) await stop(r);
      }
    }

    log('tarpush re-push, everything already in the registry ...');
    const repushOci = await tarpushPush(ociDir, ociReg!, `run${args.runs}`);
    keep('repush-oci/tarpush', repushOci, 'tarpush re-push of the OCI layout');
    const repushLegacy = await tarpushPush(legacyTar, legacyReg!, `run${args.runs}-legacy`);
    keep('repush-legacy/tarpush', repushLegacy, 'tarpush re-push of the legacy archive (warm cache)');
    log('skopeo re-push of the OCI layout (reference) ...');
    keep('repush-oci/skopeo', await skopeoPush(`oci:${ociDir}:${TAG}`, skopeoOciReg!), 'skopeo re-push of the OCI layout');
    check(pushedDigest(repushOci) === ociDigest, 'OCI re-push prints the same digest');
    check(pushedDigest(repushLegacy) === tarpushLegacyDigest, 'legacy re-push prints the same digest');
    await stopAll();

    log('tarpush digest of the legacy archive without cache (offline digest = pushed digest?) ...');
    const offline = await mustRun('tarpush digest --no-cache', [process.execPath, CLI, 'digest', '--no-cache', legacyTar], { env: env('digest'), scratch });
    check(offline.stdout.trim() === tarpushLegacyDigest, `legacy: offline tarpush digest (--no-cache) equals the pushed digest`);
    const ociOffline = await mustRun('tarpush digest', [process.execPath, CLI, 'digest', ociDir], { env: env('digest'), scratch });
    check(ociOffline.stdout.trim() === ociDigest, 'OCI: offline tarpush digest equals the pushed digest');

    // ---- report ----
    const get = (k: string) => best.get(k)?.m;
    const rows: string[][] = [];
    const row = (name: string, tk: string, sk: string | undefined, targetText: string, pass: (tp: Measured, sp?: Measured) => boolean, mb: number) => {
      const tp = get(tk);
      const sp = sk ? get(sk) : undefined;
      if (!tp) return;
      const ratio = sp ? tp.wall / sp.wall : NaN;
      rows.push([
        name,
        fmt(mb / MB, 0),
        fmt(tp.wall, 2),
        sp ? fmt(sp.wall, 2) : '-',
        Number.isFinite(ratio) ? fmt(ratio, 2) : '-',
        fmt(tp.cpu, 1),
        sp ? fmt(sp.cpu, 1) : '-',
        fmt(tp.rssMiB, 0),
        sp ? fmt(sp.rssMiB, 0) : '-',
        targetText,
        targetText === '(info)' ? '' : verdict(pass(tp, sp)),
      ]);
    };
    row('OCI layout, gzip layers', 'oci/tarpush', 'oci/skopeo', `ratio <= ${TARGET.oci}`, (tp, sp) => !!sp && tp.wall <= TARGET.oci * sp.wall, oci.compressed);
    row('legacy docker save, cold cache', 'legacy/tarpush', 'legacy/skopeo', `ratio <= ${TARGET.legacy}`, (tp, sp) => !!sp && tp.wall <= TARGET.legacy * sp.wall, legacyBytes);
    row('legacy, warm cache, fresh reg.', 'warm/tarpush', 'legacy/skopeo', `ratio <= ${TARGET.legacy}`, (tp, sp) => !!sp && tp.wall <= TARGET.legacy * sp.wall, legacyBytes);
    row('re-push OCI, all blobs exist', 'repush-oci/tarpush', 'repush-oci/skopeo', `< ${TARGET.repushS} s`, (tp) => tp.wall < TARGET.repushS, oci.compressed);
    row('re-push legacy, warm, all exist', 'repush-legacy/tarpush', undefined, `< ${TARGET.repushS} s`, (tp) => tp.wall < TARGET.repushS, legacyBytes);

    const cores = availableParallelism();
    console.log(
      `\ntarpush push bench: ${args.layers} layers; OCI ${fmt(oci.compressed / MiB)} MiB gzip (${fmt(oci.uncompressed / MiB)} MiB uncompressed); ` +
        `legacy ${fmt(legacyBytes / MiB)} MiB uncompressed; ${cores} cores; node ${process.version}; ` +
        `best of ${args.runs} run(s) per tool; registry: ${'/usr/bin/docker-registry'} on 127.0.0.1, one per tool and case`,
    );
    console.log(`load average: at start ${loadStart}, at end ${loadAverage()} (1/5/15 min)\n`);
    console.log(
      table(
        ['case', 'MB', 'tarpush s', 'skopeo s', 'ratio', 'tp CPU s', 'sk CPU s', 'tp RSS MiB', 'sk RSS MiB', 'target', 'result'],
        rows,
      ),
    );
    const tarpushRuns = [...best.entries()].filter(([k]) => k.endsWith('/tarpush')).flatMap(([, b]) => b.all);
    const peak = Math.max(...tarpushRuns.map((m) => m.rssMiB));
    console.log(`\ntarpush peak RSS over all runs: ${fmt(peak, 0)} MiB (target <= ${TARGET.rssMiB} MiB): ${verdict(peak <= TARGET.rssMiB)}`);
    if (args.runs > 1) {
      console.log('all runs (wall s):');
      for (const [k, b] of best) console.log(`  ${k.padEnd(22)} ${b.all.map((m) => fmt(m.wall, 2)).join(' / ')}`);
    }
    console.log('ratio = tarpush wall / skopeo wall; MB = 10^6 bytes of layers (gzip for OCI, uncompressed for legacy)');
    console.log('the warm-cache row compares with the cold skopeo push (skopeo has no compression cache)');
    console.log('\nchecks');
    for (const c of checks) console.log(`  ${c}`);
  });
}

main().catch((e: unknown) => {
  console.error(`push bench: ${(e as Error).message}`);
  cleanupDirs();
  process.exit(1);
});
