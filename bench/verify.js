#!/usr/bin/env node
// Benchmark of verifyArtifact on the BUILT code (dist/; run `npm run build` first): the mean time of one
// in-process verification of one Sigstore bundle, after warm-up. The first (cold) call is reported apart: it
// includes the lazy import of the Sigstore libraries and the read + hash check of the shipped trusted root.
//
//   node bench/verify.js [--runs N] [--warmup N] [--json] [<case dir>]
//
// <case dir> is a folder of the Sigstore conformance data set (bundle.sigstore.json, artifact, case.json);
// default: happy-path-v0.3 under AGENTVM_CONFORMANCE_DIR or ../shared/conformance/sigstore.

import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { BIN, ROOT, git, timeCommand } from './lib.js';

const REPO = fileURLToPath(new URL('..', import.meta.url));
const DIST = join(REPO, 'dist/providers/image/verify.js');
const DIST_ROOT = join(REPO, 'dist/providers/image/trusted-root.js');

function parseArgs(argv) {
  const opts = { runs: 200, warmup: 20, json: false, dir: undefined };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--runs') opts.runs = Number(argv[++i]);
    else if (a === '--warmup') opts.warmup = Number(argv[++i]);
    else if (a === '--json') opts.json = true;
    else if (!a.startsWith('--') && opts.dir === undefined) opts.dir = a;
    else throw new Error(`unknown argument ${a}`);
  }
  if (!Number.isSafeInteger(opts.runs) || opts.runs < 1 || !Number.isSafeInteger(opts.warmup) || opts.warmup < 0) {
    throw new Error('--runs must be >= 1 and --warmup >= 0');
  }
  opts.dir ??= join(
    process.env.AGENTVM_CONFORMANCE_DIR ??
      (existsSync(resolve(REPO, '../shared/conformance/sigstore'))
        ? resolve(REPO, '../shared/conformance/sigstore')
        : join(REPO, 'fixtures', 'sigstore-conformance')),
    'happy-path-v0.3',
  );
  return opts;
}

/** The request case.json describes (same rules as test/sigstore-conformance.test.ts). */
function requestFor(dir, emptyTrustedRoot) {
  const c = JSON.parse(readFileSync(join(dir, 'case.json'), 'utf8'));
  const policy =
    c.key !== null
      ? { kind: 'key', publicKeyPem: readFileSync(join(dir, c.key), 'utf8') }
      : c.identity !== null && c.issuer !== null
        ? { kind: 'keyless', identity: c.identity, issuer: c.issuer }
        : undefined;
  const vo = c.verifier_options;
  return {
    name: c.name,
    request: {
      bundle: JSON.parse(readFileSync(join(dir, 'bundle.sigstore.json'), 'utf8')),
      artifactSha256: c.artifact_sha256,
      artifact: readFileSync(join(dir, c.artifact)),
      policy,
      // the public-good root is the shipped default; other roots are passed as the case names them
      ...(c.trusted_root === '../trusted_root.public-good.json'
        ? {}
        : {
            trustedRoot: {
              json: c.trusted_root === null ? emptyTrustedRoot() : readFileSync(resolve(dir, c.trusted_root)),
            },
          }),
      ...(vo ? { thresholds: { tlog: vo.tlogThreshold, ctlog: vo.ctlogThreshold, tsa: vo.timestampThreshold } } : {}),
    },
  };
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  if (!existsSync(DIST)) throw new Error(`${DIST} not found: build first (npm run build)`);
  if (!existsSync(join(opts.dir, 'case.json')))
    throw new Error(`no conformance case at ${opts.dir} (set AGENTVM_CONFORMANCE_DIR or pass a case dir)`);
  const { verifyArtifact } = await import(pathToFileURL(DIST).href);
  const { emptyTrustedRoot } = await import(pathToFileURL(DIST_ROOT).href);
  const { name, request } = requestFor(opts.dir, emptyTrustedRoot);

  let t = performance.now();
  const first = await verifyArtifact(request);
  const coldMs = performance.now() - t;
  if (!first.ok)
    throw new Error(
      `${name} does not verify, nothing to time: ${first.diagnostics.map((d) => `${d.code}: ${d.summary}`).join('; ')}`,
    );

  for (let i = 0; i < opts.warmup; i++) await verifyArtifact(request);
  const times = [];
  for (let i = 0; i < opts.runs; i++) {
    t = performance.now();
    const res = await verifyArtifact(request);
    times.push(performance.now() - t);
    if (!res.ok) throw new Error(`run ${i} failed: ${res.diagnostics[0]?.code}`);
  }
  times.sort((a, b) => a - b);
  const mean = times.reduce((s, x) => s + x, 0) / times.length;
  const at = (q) => times[Math.min(times.length - 1, Math.floor(q * times.length))];
  // The peer in the same run: a whole `agentvm plan` of the bundled example (3 signed releases, 5 units, 1 job).
  const planSeconds = timePlanOfExample();
  const result = {
    case: name,
    runs: opts.runs,
    warmup: opts.warmup,
    meanMs: mean,
    p50Ms: at(0.5),
    p95Ms: at(0.95),
    minMs: times[0],
    maxMs: times.at(-1),
    coldMs,
    planMs: planSeconds * 1000,
    node: process.version,
  };
  if (opts.json) {
    process.stdout.write(`${JSON.stringify(result)}\n`);
  } else {
    const f = (x) => x.toFixed(2);
    process.stdout.write(
      `verifyArtifact ${name}: mean ${f(mean)} ms over ${opts.runs} runs after ${opts.warmup} warm-up ` +
        `(p50 ${f(result.p50Ms)}, p95 ${f(result.p95Ms)}, min ${f(result.minMs)}, max ${f(result.maxMs)}); cold first call ${f(coldMs)} ms\n`,
    );
    process.stdout.write(
      `agentvm plan of examples/fleet (edge-1, empty root): ${f(result.planMs)} ms median → one verification is ${f((100 * result.p50Ms) / result.planMs)}% of a plan\n`,
    );
  }
}

function timePlanOfExample() {
  const base = mkdtempSync(join(tmpdir(), 'agentvm-bench-verify-'));
  try {
    cpSync(join(ROOT, 'examples', 'fleet'), join(base, 'fleet'), { recursive: true });
    cpSync(join(ROOT, 'examples', 'artifacts'), join(base, 'artifacts'), { recursive: true });
    git(join(base, 'fleet'), 'init', '-q', '-b', 'main');
    git(join(base, 'fleet'), 'add', '-A');
    git(join(base, 'fleet'), 'commit', '-q', '-m', 'example');
    return timeCommand(
      process.execPath,
      [BIN, 'plan', '--repo', join(base, 'fleet'), '--host', 'edge-1', '--root', join(base, 'root')],
      { runs: 5 },
    );
  } finally {
    rmSync(base, { recursive: true, force: true });
  }
}

main().catch((err) => {
  process.stderr.write(`bench/verify: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
