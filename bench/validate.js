#!/usr/bin/env node
// bench/validate.js — `agentvm validate` on examples/fleet plus 1,000 generated workloads, next to `node -e 0`
// measured in the same run. Target (issue 2): well under a second. The warm figure uses the content-addressed
// document cache (src/contracts/document-cache.ts) as every run after the first does; the cold one disables it.
// Also (issue 18): validate of a 1 MB document with hostile content — long runs of the prefixes, separators and
// alphabets the secret detectors look for — next to a benign 1 MB document, with the ratio (target ≤ 2×).
// Usage: npm run build && node bench/validate.js [--workloads N] [--runs R]
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { BIN, fmt, generatedFleet, git, timeCommand } from './lib.js';

const arg = (name, dflt) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const n = arg('--workloads', 1000);
const runs = arg('--runs', 5);

const repo = generatedFleet(n);
try {
  const node = timeCommand(process.execPath, ['-e', '0'], { runs });
  const validate = timeCommand(process.execPath, [BIN, 'validate', '--repo', repo], { runs });
  // Without the content-addressed document cache: every document parsed and schema-checked from scratch.
  const cold = timeCommand(process.execPath, [BIN, 'validate', '--repo', repo], {
    runs: Math.min(runs, 3),
    env: { AGENTVM_NO_CACHE: '1' },
  });
  const small = timeCommand(process.execPath, [BIN, 'validate', '--repo', generatedFleetSmall()], { runs });
  console.log(`node -e 0                                : ${fmt(node)}`);
  console.log(`agentvm validate examples/fleet          : ${fmt(small)}  (${(small / node).toFixed(1)}× node)`);
  console.log(
    `agentvm validate fleet + ${n} workloads : ${fmt(validate)}  (${(validate / node).toFixed(1)}× node)  target < 1 s: ${validate < 1 ? 'met' : 'MISSED'}`,
  );
  console.log(`  … same, document cache off (first run)   : ${fmt(cold)}  (${(cold / node).toFixed(1)}× node)`);
} finally {
  rmSync(repo, { recursive: true, force: true });
}

// 1 MB documents: both are refused (a description is at most 500 characters), so both go through the same parse,
// schema and secret-scan path; only the content differs.
const HOSTILE = ['sk-', 'eyJ-', 'a://b:c@', 'github_pat_', 'token=', 'aB3+', 'a1f', '/aB3', ' #', 'AKIA'];
const benignRepo = bigDocumentRepo('The agent answers questions about the shared docs. ');
const benign = timeCommand(process.execPath, [BIN, 'validate', '--repo', benignRepo], {
  runs,
  okCodes: [1],
  env: { AGENTVM_NO_CACHE: '1' },
});
console.log(`agentvm validate, benign 1 MB document     : ${fmt(benign)}`);
let worst = 0;
for (const pattern of HOSTILE) {
  const dir = bigDocumentRepo(pattern);
  try {
    const t = timeCommand(process.execPath, [BIN, 'validate', '--repo', dir], {
      runs: Math.min(runs, 3),
      okCodes: [1],
      env: { AGENTVM_NO_CACHE: '1' },
    });
    worst = Math.max(worst, t / benign);
    console.log(
      `  … hostile ${JSON.stringify(pattern).padEnd(14)} × 1 MB        : ${fmt(t)}  (${(t / benign).toFixed(2)}× benign)`,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
rmSync(benignRepo, { recursive: true, force: true });
console.log(
  `worst hostile / benign: ${worst.toFixed(2)}×  target ≤ 2×: ${worst <= 2 ? 'met' : 'MISSED'}  (load average ${loadavg()
    .map((l) => l.toFixed(2))
    .join(' ')})`,
);

function bigDocumentRepo(pattern) {
  const dir = mkdtempSync(join(tmpdir(), 'agentvm-bench-big-'));
  const body = pattern.repeat(Math.ceil(1_000_000 / pattern.length)).slice(0, 1_000_000);
  mkdirSync(join(dir, 'hosts'));
  mkdirSync(join(dir, 'workloads', 'docs-helper'), { recursive: true });
  writeFileSync(
    join(dir, 'hosts', 'edge.yaml'),
    'apiVersion: agentvm.dev/v1alpha1\nkind: Host\nmetadata:\n  name: edge\nspec:\n  workloads:\n    - docs-helper\n',
  );
  writeFileSync(
    join(dir, 'workloads', 'docs-helper', 'contract.yaml'),
    `apiVersion: agentvm.dev/v1alpha1\nkind: WorkloadContract\nmetadata:\n  name: docs-helper\n  description: ${JSON.stringify(body)}\nspec:\n  owner: docs-team@example.com\n  riskTier: low\n  substrate: service\n`,
  );
  writeFileSync(
    join(dir, 'workloads', 'docs-helper', 'manifest.yaml'),
    'apiVersion: agentvm.dev/v1alpha1\nkind: WorkloadManifest\nmetadata:\n  name: docs-helper\nspec:\n  archetype: git-release\n  source:\n    git:\n      repo: https://git.example.com/agents/docs-helper.git\n      commit: 9b2f4c1e7d3a8b6c5e4f3a2b1c0d9e8f7a6b5c4d\n  profiles:\n    - name: docs\n      entrypoint: [python3, -m, docs_helper]\n      listen:\n        port: 8101\n',
  );
  git(dir, 'init', '-q');
  git(dir, 'add', '-A');
  git(dir, 'commit', '-q', '-m', 'big document');
  return dir;
}

function generatedFleetSmall() {
  const dir = generatedFleet(0);
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  return dir;
}
