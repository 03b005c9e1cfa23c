#!/usr/bin/env node
// bench/validate.js — `agentvm validate` on examples/fleet plus 1,000 generated workloads, next to `node -e 0`
// measured in the same run. Target (issue 2): well under a second. The warm figure uses the content-addressed
// document cache (src/contracts/document-cache.ts) as every run after the first does; the cold one disables it.
// Usage: npm run build && node bench/validate.js [--workloads N] [--runs R]
import { rmSync } from 'node:fs';
import { BIN, fmt, generatedFleet, timeCommand } from './lib.js';

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
  const cold = timeCommand(process.execPath, [BIN, 'validate', '--repo', repo], { runs: Math.min(runs, 3), env: { AGENTVM_NO_CACHE: '1' } });
  const small = timeCommand(process.execPath, [BIN, 'validate', '--repo', generatedFleetSmall()], { runs });
  console.log(`node -e 0                                : ${fmt(node)}`);
  console.log(`agentvm validate examples/fleet          : ${fmt(small)}  (${(small / node).toFixed(1)}× node)`);
  console.log(`agentvm validate fleet + ${n} workloads : ${fmt(validate)}  (${(validate / node).toFixed(1)}× node)  target < 1 s: ${validate < 1 ? 'met' : 'MISSED'}`);
  console.log(`  … same, document cache off (first run)   : ${fmt(cold)}  (${(cold / node).toFixed(1)}× node)`);
} finally {
  rmSync(repo, { recursive: true, force: true });
}

function generatedFleetSmall() {
  const dir = generatedFleet(0);
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  return dir;
}
