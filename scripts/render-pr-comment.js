#!/usr/bin/env node
// Renders the pull-request comment of `examples/ci/pr-plan.yml` locally, by the very code path the workflow runs:
// one `agentvm plan --json` (the built CLI next to this script, or $AGENTVM_BIN), then the markdown view of that
// same plan (dist/ui/plan-markdown.js) — so the comment, the saved plan JSON and the exit code come from one plan.
//
// Usage: node scripts/render-pr-comment.js --repo DIR --host NAME [--root DIR] [--ref REF] [--out FILE] [--plan-json FILE]
//   --out        write the comment body there (default: stdout)
//   --plan-json  also write the plan document there (what the workflow uploads and reads summary.errors from)
// Exit codes: 0 the plan has no policy errors (changes and drift are fine); 1 the plan has policy errors or agentvm
// could not plan (the comment then says why); 64 bad usage.
// The output is byte for byte what `agentvm plan --format markdown` prints for the same repo, ref, host and root.
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const packageRoot = join(dirname(fileURLToPath(import.meta.url)), '..');

let args;
try {
  args = parseArgs({
    options: {
      repo: { type: 'string', default: '.' },
      host: { type: 'string' },
      root: { type: 'string', default: '/' },
      ref: { type: 'string', default: 'HEAD' },
      out: { type: 'string' },
      'plan-json': { type: 'string' },
    },
    strict: true,
  }).values;
} catch (err) {
  process.stderr.write(
    `render-pr-comment: ${err.message}\nUsage: node scripts/render-pr-comment.js --repo DIR --host NAME [--root DIR] [--ref REF] [--out FILE] [--plan-json FILE]\n`,
  );
  process.exit(64);
}
if (!args.host) {
  process.stderr.write('render-pr-comment: --host is required (the comment is per host: its marker names the host).\n');
  process.exit(64);
}

const { renderPlanMarkdown, planCommentMarker } = await import(
  pathToFileURL(join(packageRoot, 'dist', 'ui', 'plan-markdown.js')).href
);

// AGENTVM_BIN may name another agentvm (e.g. node_modules/.bin/agentvm); by default the CLI of this package.
const bin = process.env.AGENTVM_BIN
  ? [process.env.AGENTVM_BIN]
  : [process.execPath, join(packageRoot, 'bin', 'run.js')];
const cliArgs = [
  'plan',
  '--repo',
  args.repo,
  '--ref',
  args.ref,
  '--host',
  args.host,
  '--root',
  resolve(args.root),
  '--json',
];
const run = spawnSync(bin[0], [...bin.slice(1), ...cliArgs], {
  encoding: 'utf8',
  maxBuffer: 1 << 28,
  env: { ...process.env, NO_COLOR: '1' },
});
if (run.error) {
  process.stderr.write(`render-pr-comment: cannot run agentvm (${bin.join(' ')}): ${run.error.message}\n`);
  process.exit(1);
}

let doc;
try {
  doc = JSON.parse(run.stdout);
} catch {
  doc = undefined;
}

let body;
let exitCode;
if (doc && typeof doc === 'object' && 'formatVersion' in doc && 'summary' in doc) {
  if (args['plan-json']) writeFileSync(args['plan-json'], `${JSON.stringify(doc, null, 2)}\n`);
  body = renderPlanMarkdown(doc);
  exitCode = doc.summary.errors > 0 ? 1 : 0;
} else {
  // No plan at all (unreadable repo, unknown host, …): still one comment, saying what went wrong and what to do.
  const error = doc?.error;
  const diagnostics =
    Array.isArray(error?.diagnostics) && error.diagnostics.length
      ? error.diagnostics
      : [
          {
            severity: 'error',
            code: error?.code ?? 'internal',
            summary: error?.message ?? (run.stderr.trim() || `agentvm exited ${run.status}`),
          },
        ];
  const oneLine = (s) => String(s).replace(/\r?\n/g, ' ');
  body = [
    planCommentMarker(args.host),
    `### agentvm plan — \`${args.host}\` — ❌ could not plan`,
    '',
    ...diagnostics.map(
      (d) =>
        `- **${d.severity}** \`${d.code}\` — ${oneLine(d.summary)}${d.detail ? `<br>_Fix:_ ${oneLine(d.detail)}` : ''}`,
    ),
    '',
  ].join('\n');
  exitCode = 1;
}

if (args.out) writeFileSync(args.out, body);
else process.stdout.write(body);
if (run.stderr.trim() && exitCode !== 0) process.stderr.write(run.stderr);
process.exit(exitCode);
