#!/usr/bin/env node
// bench/plan-apply.js — issue 3: `agentvm plan` and `agentvm apply` on N git-release workloads on one host, next to
// Terraform on as many `terraform_data` resources as agentvm's plan has (a workload is a release plus one gateway
// unit per profile, and validation requires a profile: 2 resources per workload), measured in the same run. For
// each N: plan with nothing applied yet (all create), apply of everything (one run, timed end to end,
// resources/s), and the no-op plan after it; the ratio agentvm/terraform of each figure, and the growth from one N
// to the next (10× the resources: ≈10× is linear, ≈100× quadratic).
//
//   npm run build && node bench/plan-apply.js [--sizes 100,1000,5000] [--runs 3] [--json]
//       [--skip-terraform-apply-above N] [--concurrency C] [--extra-concurrency C2] [--terraform PATH]
//
// --runs: plans are the median of R runs after one warm-up; applies run once (an apply changes the root).
// --skip-terraform-apply-above N: for sizes (workloads) above N, Terraform's (quadratic) apply is not run; its
//   no-op plan is then measured on a state file written by this script with the same shape `terraform apply` writes.
// --concurrency C: passed to `agentvm apply --concurrency` (default: agentvm's own default).
// --extra-concurrency C2: a second agentvm apply of the same plan on a fresh root with `--concurrency C2` (default 16;
//   0 skips it), reported as its own row.
// Every figure carries the 1-minute load average at its start and end (the machine may be shared: say what load the
// figures were taken under), and the run starts and ends with an fsync probe: 4 KiB write + fdatasync in a loop in
// the bench's work directory, the disk's durable-write rate that bounds an apply doing one durable step per resource;
// the table's last line turns it into that floor (2 syncs per resource at the slower probe rate) next to both applies.
// Progress goes to stderr; the tables (or, with --json, one JSON document) to stdout.

import { randomUUID } from 'node:crypto';
import {
  closeSync,
  fdatasyncSync,
  mkdirSync,
  openSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { BIN, ROOT, benchWorkDirectory, releaseFleet, runStreaming, timeCommand, tinySourceRepository } from './lib.js';

const FIGURES = ['planCreate', 'applyCreate', 'planNoop'];
const FSYNC_PROBE_WRITES = 300;
const opts = parseArgs(process.argv.slice(2));
// See benchWorkDirectory for why the name is not a mkdtemp one.
const { work, cleanups, cleanup } = benchWorkDirectory('agentvm-bench-plan-apply');

const TF_ENV = {
  TF_IN_AUTOMATION: '1',
  CHECKPOINT_DISABLE: '1',
  // An empty CLI configuration: no user settings (plugin cache, mirrors, credentials) change what is measured.
  TF_CLI_CONFIG_FILE: join(work, 'terraformrc'),
};
writeFileSync(TF_ENV.TF_CLI_CONFIG_FILE, '');

const log = (message) => process.stderr.write(`[plan-apply] ${message}\n`);

try {
  const environment = describeEnvironment();
  log(
    `${environment.agentvm}; ${environment.terraform}; node ${process.version}; ${environment.cores} cores; sizes ${opts.sizes.join(', ')}; plan runs ${opts.runs}`,
  );
  const sourceDir = join(work, 'release-source');
  const source = { repo: sourceDir, commit: tinySourceRepository(sourceDir) };
  environment.fsyncBefore = fsyncProbe(work);
  log(
    `fsync probe: ${environment.fsyncBefore.perSecond.toFixed(0)} write+fdatasync/s (load ${environment.fsyncBefore.load.toFixed(2)})`,
  );
  const results = [];
  for (const n of opts.sizes) {
    const agentvm = await benchAgentvm(n, source);
    results.push({ n, agentvm, terraform: await benchTerraform(n, agentvm.resources ?? n) });
  }
  environment.fsyncAfter = fsyncProbe(work);
  log(
    `fsync probe: ${environment.fsyncAfter.perSecond.toFixed(0)} write+fdatasync/s (load ${environment.fsyncAfter.load.toFixed(2)})`,
  );
  if (distStamp() !== environment.distStamp) {
    log('WARNING: dist/ was rebuilt during the run: the figures may mix two builds of agentvm');
    environment.rebuiltDuringRun = true;
  }
  const report = withRatios(results);
  if (opts.json)
    console.log(
      JSON.stringify(
        {
          environment,
          options: {
            runs: opts.runs,
            concurrency: opts.concurrency ?? null,
            extraConcurrency: opts.extraConcurrency,
            skipTerraformApplyAbove: opts.skipTfApplyAbove ?? null,
          },
          sizes: report,
        },
        null,
        2,
      ),
    );
  else printTables(environment, report);
  const failed = report.some((r) => r.agentvm.errors.length > 0 || r.terraform.errors.length > 0);
  process.exitCode = failed ? 1 : 0;
} finally {
  cleanup();
}

function parseArgs(argv) {
  const o = {
    sizes: [100, 1000, 5000],
    runs: 3,
    json: false,
    skipTfApplyAbove: undefined,
    concurrency: undefined,
    extraConcurrency: 16,
    terraform: '/usr/local/bin/terraform',
  };
  const int = (name, v) => {
    const n = Number(v);
    if (!Number.isSafeInteger(n) || n < 1)
      throw new Error(`${name} needs a positive integer, got ${JSON.stringify(v)}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--sizes')
      o.sizes = String(argv[++i] ?? '')
        .split(',')
        .map((s) => int('--sizes', s.trim()));
    else if (a === '--runs') o.runs = int('--runs', argv[++i]);
    else if (a === '--json') o.json = true;
    else if (a === '--skip-terraform-apply-above') o.skipTfApplyAbove = int(a, argv[++i]);
    else if (a === '--concurrency') o.concurrency = int(a, argv[++i]);
    else if (a === '--extra-concurrency') o.extraConcurrency = argv[i + 1] === '0' ? (i++, 0) : int(a, argv[++i]);
    else if (a === '--terraform') o.terraform = argv[++i];
    else
      throw new Error(
        `unknown argument ${a}; usage: node bench/plan-apply.js [--sizes 100,1000,5000] [--runs 3] [--json] [--skip-terraform-apply-above N] [--concurrency C] [--extra-concurrency C2] [--terraform PATH]`,
      );
  }
  return o;
}

function describeEnvironment() {
  const agentvm = spawnSync(process.execPath, [BIN, '--version'], { encoding: 'utf8' });
  if (agentvm.status !== 0)
    throw new Error(`agentvm does not start (${BIN}); run \`npm run build\` first.\n${agentvm.stderr}`);
  const tf = spawnSync(opts.terraform, ['version'], { encoding: 'utf8', env: { ...process.env, ...TF_ENV } });
  if (tf.error || tf.status !== 0)
    throw new Error(
      `Terraform is needed as the peer: ${opts.terraform} did not run (${tf.error?.message ?? tf.stderr}). Install Terraform 1.11 or pass --terraform PATH.`,
    );
  return {
    agentvm: agentvm.stdout.trim(),
    terraform: tf.stdout.split('\n')[0].trim(),
    node: process.version,
    cores: cpus().length,
    date: new Date().toISOString(),
    distStamp: distStamp(),
    rebuiltDuringRun: false,
  };
}

/** The newest modification time under dist/: others may rebuild while a long run goes on. */
function distStamp() {
  let newest = 0;
  const walk = (dir) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else newest = Math.max(newest, statSync(p).mtimeMs);
    }
  };
  walk(join(ROOT, 'dist'));
  return newest;
}

/** The 1-minute load average now. */
function load1() {
  return loadavg()[0];
}

/**
 * `step` with the load average at its start and end recorded in `loads[key]` (when given): figures taken on a
 * shared machine say what else was running.
 */
async function measured(loads, key, errors, label, step) {
  const start = load1();
  try {
    return await measure(errors, label, step);
  } finally {
    loads[key] = [start, load1()];
  }
}

/** write(4 KiB) + fdatasync, FSYNC_PROBE_WRITES times, in `dir`: durable writes per second of this disk, now. */
function fsyncProbe(dir) {
  const file = join(dir, 'fsync-probe');
  const fd = openSync(file, 'w');
  const block = Buffer.alloc(4096, 7);
  const start = load1();
  const t = process.hrtime.bigint();
  try {
    for (let i = 0; i < FSYNC_PROBE_WRITES; i++) {
      writeSync(fd, block, 0, block.length, (i % 16) * 4096);
      fdatasyncSync(fd);
    }
  } finally {
    closeSync(fd);
    rmSync(file, { force: true });
  }
  const seconds = Number(process.hrtime.bigint() - t) / 1e9;
  return { writes: FSYNC_PROBE_WRITES, seconds, perSecond: FSYNC_PROBE_WRITES / seconds, load: (start + load1()) / 2 };
}

/** Runs `step`; a failure is recorded (and printed) instead of ending the benchmark. */
async function measure(errors, label, step) {
  try {
    return await step();
  } catch (error) {
    const text = error instanceof Error ? error.message : String(error);
    // A failed plan prints thousands of lines: keep the head (the command and the first changes) and the tail.
    const message = `${label}: ${text.length > 3000 ? `${text.slice(0, 1500)}\n…\n${text.slice(-1000)}` : text}`;
    errors.push(message);
    log(`FAILED ${message}`);
    return undefined;
  }
}

/** Prints apply progress to stderr at every 10 % and at least every 15 s. */
function progressCounter(label, total, isDone) {
  let done = 0;
  let lastTenth = 0;
  let lastAt = Date.now();
  const started = Date.now();
  return (line) => {
    if (!isDone(line)) return;
    done++;
    const tenth = Math.floor((done * 10) / total);
    if (tenth > lastTenth || Date.now() - lastAt > 15000) {
      lastTenth = tenth;
      lastAt = Date.now();
      log(`${label}: ${done}/${total} after ${((Date.now() - started) / 1000).toFixed(1)} s`);
    }
  };
}

async function benchAgentvm(n, source) {
  const errors = [];
  const out = {
    resources: undefined,
    byProvider: {},
    planCreateCold: undefined,
    planCreate: undefined,
    applyCreate: undefined,
    applyRate: undefined,
    applyReported: undefined,
    planNoop: undefined,
    planNoopNoIndex: undefined,
    applyCreateExtra: undefined,
    load: {},
    warnings: [],
    errors,
  };
  log(`N=${n}: generating the desired-state repository (${n} git-release workloads, one host)`);
  const repo = await measure(errors, 'generating the agentvm repository', () => releaseFleet(n, source));
  if (!repo) return out;
  cleanups.unshift(() => rmSync(repo, { recursive: true, force: true }));
  const root = join(work, `agentvm-root-${n}`);
  mkdirSync(root);
  const target = ['--repo', repo, '--host', 'bench', '--root', root];
  // agentvm caches parsed documents per user (XDG_CACHE_HOME/agentvm): the bench's own cache, never the user's.
  // The first plan runs with an empty one (a CI runner's case); every later command shares a warm one.
  const env = { XDG_CACHE_HOME: join(work, `xdg-cache-${n}`) };
  const spawnEnv = { ...process.env, ...env };

  log(`N=${n}: agentvm plan, all create, empty document cache (1 run)`);
  const cold = await measured(out.load, 'planCreateCold', errors, 'agentvm plan (all create, cold cache)', () =>
    runStreaming(process.execPath, [BIN, 'plan', ...target, '--detailed-exitcode'], {
      env: { XDG_CACHE_HOME: join(work, `xdg-cache-cold-${n}`) },
      okCodes: [2],
    }),
  );
  out.planCreateCold = cold?.seconds;

  const valid = spawnSync(process.execPath, [BIN, 'validate', '--repo', repo], {
    encoding: 'utf8',
    maxBuffer: 1 << 28,
    env: spawnEnv,
  });
  if (valid.status !== 0) {
    errors.push(`agentvm validate exited ${valid.status}: ${(valid.stdout + valid.stderr).slice(0, 2000)}`);
    log(`FAILED N=${n}: the generated repository does not validate; agentvm is not measured at this size`);
    return out;
  }

  // What the plan contains: how many resources, and which warnings (e.g. a provider this build lacks).
  const json = spawnSync(process.execPath, [BIN, 'plan', ...target, '--format', 'json'], {
    encoding: 'utf8',
    maxBuffer: 1 << 30,
    env: spawnEnv,
  });
  if (json.status !== 0) {
    errors.push(`agentvm plan --format json exited ${json.status}: ${json.stderr.slice(-2000)}`);
    return out;
  }
  const plan = JSON.parse(json.stdout);
  out.resources = plan.summary.create;
  for (const c of plan.changes) out.byProvider[c.provider] = (out.byProvider[c.provider] ?? 0) + 1;
  out.warnings = [
    ...new Set(plan.diagnostics.filter((d) => d.severity === 'warning').map((d) => `${d.code}: ${d.summary}`)),
  ];
  if (out.byProvider['release.git'] !== n)
    errors.push(
      `agentvm plan creates ${out.byProvider['release.git'] ?? 0} release.git resources, expected ${n} (one per workload)`,
    );

  log(`N=${n}: agentvm plan, all create (${opts.runs} runs + warm-up)`);
  out.planCreate = await measured(out.load, 'planCreate', errors, 'agentvm plan (all create)', () =>
    timeCommand(process.execPath, [BIN, 'plan', ...target, '--detailed-exitcode'], {
      runs: opts.runs,
      env,
      okCodes: [2],
    }),
  );

  log(`N=${n}: agentvm apply --auto-approve of ${out.resources} resources`);
  const counter = progressCounter(`N=${n} agentvm apply`, out.resources, (line) =>
    /^\S+: (created|updated|replaced|deleted|unchanged|FAILED|skipped)\b/.test(line),
  );
  const concurrency = opts.concurrency ? ['--concurrency', String(opts.concurrency)] : [];
  const applied = await measured(out.load, 'applyCreate', errors, 'agentvm apply --auto-approve', () =>
    runStreaming(process.execPath, [BIN, 'apply', ...target, '--auto-approve', ...concurrency], {
      env,
      onLine: counter,
    }),
  );
  if (applied) {
    out.applyCreate = applied.seconds;
    out.applyRate = out.resources / applied.seconds;
    // "Apply complete: 1000 applied, 0 failed, 0 skipped in 12.3s; lockfile serial 2001."
    const summary = /(\d+) applied, (\d+) failed, (\d+) skipped in ([\d.]+)s/.exec(applied.stdout);
    if (summary) {
      out.applyReported = {
        applied: Number(summary[1]),
        failed: Number(summary[2]),
        skipped: Number(summary[3]),
        seconds: Number(summary[4]),
      };
      if (out.applyReported.applied !== out.resources)
        errors.push(`agentvm apply reports ${out.applyReported.applied} applied, expected ${out.resources}`);
    } else errors.push(`agentvm apply printed no summary line: ${applied.stdout.slice(-500)}`);
    log(`N=${n}: agentvm apply took ${applied.seconds.toFixed(2)} s (${out.applyRate.toFixed(0)} resources/s)`);

    log(`N=${n}: agentvm no-op plan (${opts.runs} runs + warm-up)`);
    out.planNoop = await measured(
      out.load,
      'planNoop',
      errors,
      'agentvm no-op plan (exit 0 = no changes expected)',
      () =>
        timeCommand(process.execPath, [BIN, 'plan', ...target, '--detailed-exitcode'], {
          runs: opts.runs,
          env,
          okCodes: [0],
        }),
    );
    // The stat index is an optimisation only: without it the plan is the same (exit 0), every file re-read and re-hashed.
    log(`N=${n}: agentvm no-op plan without the stat index (${opts.runs} runs + warm-up)`);
    out.planNoopNoIndex = await measured(
      out.load,
      'planNoopNoIndex',
      errors,
      'agentvm no-op plan, AGENTVM_NO_STAT_INDEX=1',
      () =>
        timeCommand(process.execPath, [BIN, 'plan', ...target, '--detailed-exitcode'], {
          runs: opts.runs,
          env: { ...env, AGENTVM_NO_STAT_INDEX: '1' },
          okCodes: [0],
        }),
    );
  }
  if (opts.extraConcurrency > 0) {
    // The same apply on a fresh root with more resources in flight: how far concurrency moves the per-resource cost.
    const extraRoot = join(work, `agentvm-root-${n}-c${opts.extraConcurrency}`);
    mkdirSync(extraRoot);
    log(`N=${n}: agentvm apply --auto-approve --concurrency ${opts.extraConcurrency} on a fresh root`);
    const counterExtra = progressCounter(
      `N=${n} agentvm apply --concurrency ${opts.extraConcurrency}`,
      out.resources,
      (line) => /^\S+: (created|updated|replaced|deleted|unchanged|FAILED|skipped)\b/.test(line),
    );
    const extra = await measured(
      out.load,
      'applyCreateExtra',
      errors,
      `agentvm apply --auto-approve --concurrency ${opts.extraConcurrency}`,
      () =>
        runStreaming(
          process.execPath,
          [
            BIN,
            'apply',
            '--repo',
            repo,
            '--host',
            'bench',
            '--root',
            extraRoot,
            '--auto-approve',
            '--concurrency',
            String(opts.extraConcurrency),
          ],
          { env, onLine: counterExtra },
        ),
    );
    if (extra) out.applyCreateExtra = extra.seconds;
    rmSync(extraRoot, { recursive: true, force: true });
  }
  return out;
}

function terraformModule(n) {
  const lines = [];
  for (let i = 0; i < n; i++) lines.push(`resource "terraform_data" "r${i}" {\n  input = "${i}"\n}\n`);
  return lines.join('');
}

/** The state `terraform apply` writes for terraformModule(n) (format version 4), for when the apply is skipped. */
function terraformState(n) {
  const resources = [];
  for (let i = 0; i < n; i++) {
    const value = { value: String(i), type: 'string' };
    resources.push({
      mode: 'managed',
      type: 'terraform_data',
      name: `r${i}`,
      provider: 'provider["terraform.io/builtin/terraform"]',
      instances: [
        {
          schema_version: 0,
          attributes: { id: randomUUID(), input: value, output: value, triggers_replace: null },
          sensitive_attributes: [],
        },
      ],
    });
  }
  return JSON.stringify(
    {
      version: 4,
      terraform_version: '1.11.4',
      serial: 1,
      lineage: randomUUID(),
      outputs: {},
      resources,
      check_results: null,
    },
    null,
    2,
  );
}

/** Terraform on `count` terraform_data resources; `n` (the size) only names the step and decides the apply skip. */
async function benchTerraform(n, count) {
  const errors = [];
  const out = {
    resources: count,
    planCreate: undefined,
    applyCreate: undefined,
    applyRate: undefined,
    applySkipped: false,
    planNoop: undefined,
    planNoopOnSynthesizedState: false,
    load: {},
    errors,
  };
  const dir = join(work, `terraform-${n}`);
  mkdirSync(dir);
  writeFileSync(join(dir, 'main.tf'), terraformModule(count));
  const tf = (...args) => [`-chdir=${dir}`, ...args];
  const init = spawnSync(opts.terraform, tf('init', '-input=false', '-no-color'), {
    encoding: 'utf8',
    env: { ...process.env, ...TF_ENV },
  });
  if (init.status !== 0) {
    errors.push(`terraform init exited ${init.status}: ${init.stderr.slice(-2000)}`);
    return out;
  }
  const planArgs = tf('plan', '-refresh=true', '-lock=false', '-input=false', '-no-color', '-detailed-exitcode');

  log(`N=${n}: terraform plan, empty state (${opts.runs} runs + warm-up)`);
  out.planCreate = await measured(out.load, 'planCreate', errors, 'terraform plan (all create)', () =>
    timeCommand(opts.terraform, planArgs, { runs: opts.runs, env: TF_ENV, okCodes: [2] }),
  );

  if (opts.skipTfApplyAbove !== undefined && n > opts.skipTfApplyAbove) {
    out.applySkipped = true;
    log(
      `N=${n}: terraform apply skipped (--skip-terraform-apply-above ${opts.skipTfApplyAbove}); no-op plan on a synthesized state`,
    );
    writeFileSync(join(dir, 'terraform.tfstate'), terraformState(count));
    out.planNoopOnSynthesizedState = true;
  } else {
    log(`N=${n}: terraform apply -auto-approve -parallelism=10 of ${count} resources`);
    const counter = progressCounter(`N=${n} terraform apply`, count, (line) => /: Creation complete after/.test(line));
    const applied = await measured(out.load, 'applyCreate', errors, 'terraform apply', () =>
      runStreaming(opts.terraform, tf('apply', '-auto-approve', '-parallelism=10', '-input=false', '-no-color'), {
        env: TF_ENV,
        onLine: counter,
      }),
    );
    if (!applied) return out;
    out.applyCreate = applied.seconds;
    out.applyRate = count / applied.seconds;
    log(`N=${n}: terraform apply took ${applied.seconds.toFixed(2)} s (${out.applyRate.toFixed(0)} resources/s)`);
  }
  log(`N=${n}: terraform no-op plan (${opts.runs} runs + warm-up)`);
  out.planNoop = await measured(
    out.load,
    'planNoop',
    errors,
    'terraform no-op plan (exit 0 = no changes expected)',
    () => timeCommand(opts.terraform, planArgs, { runs: opts.runs, env: TF_ENV, okCodes: [0] }),
  );
  return out;
}

function withRatios(results) {
  return results.map((r, i) => {
    const ratio = {};
    for (const f of FIGURES) ratio[f] = div(r.agentvm[f], r.terraform[f]);
    // Terraform has no document cache: its cold plan is its plan.
    ratio.planCreateCold = div(r.agentvm.planCreateCold, r.terraform.planCreate);
    ratio.applyCreateExtra = div(r.agentvm.applyCreateExtra, r.terraform.applyCreate);
    ratio.planNoopNoIndex = div(r.agentvm.planNoopNoIndex, r.terraform.planNoop);
    const prev = results[i - 1];
    const growth = prev
      ? {
          from: prev.n,
          sizeFactor: r.n / prev.n,
          agentvm: Object.fromEntries(
            ['planCreateCold', ...FIGURES, 'planNoopNoIndex', 'applyCreateExtra'].map((f) => [
              f,
              div(r.agentvm[f], prev.agentvm[f]),
            ]),
          ),
          terraform: Object.fromEntries(
            FIGURES.map((f) => [f, div(r.terraform[f], prev.terraform[f])]).concat([
              ['planCreateCold', div(r.terraform.planCreate, prev.terraform.planCreate)],
            ]),
          ),
        }
      : null;
    return { ...r, ratio, growth };
  });
}

/** What 2 syncs per resource, one after another, cost at the slower of the two probes' rates (null without a probe). */
function syncFloor(env, resources) {
  const rates = [env.fsyncBefore?.perSecond, env.fsyncAfter?.perSecond].filter((v) => typeof v === 'number' && v > 0);
  if (rates.length === 0 || typeof resources !== 'number') return null;
  const rate = Math.min(...rates);
  return { rate, seconds: (2 * resources) / rate };
}

function div(a, b) {
  return typeof a === 'number' && typeof b === 'number' && b > 0 ? a / b : null;
}

function printTables(env, report) {
  const s = (v) => (typeof v === 'number' ? `${v.toFixed(3)} s` : '—');
  const x = (v) => (typeof v === 'number' ? `${v.toFixed(2)}×` : '—');
  const rate = (v) => (typeof v === 'number' ? `${v.toFixed(0)}/s` : '—');
  const row = (cells, widths) =>
    cells.map((c, i) => (i === 0 ? String(c).padEnd(widths[i]) : String(c).padStart(widths[i]))).join('  ');
  console.log(
    `agentvm plan/apply vs Terraform — ${env.agentvm}, ${env.terraform}, node ${env.node}, ${env.cores} cores, ${env.date}`,
  );
  console.log(
    `plans: median of ${opts.runs} runs after a warm-up; applies: one run each, wall clock including process start.`,
  );
  console.log(
    `load: 1-minute load average at the start→end of each figure. fsync probe (4 KiB write + fdatasync): ${env.fsyncBefore.perSecond.toFixed(0)}/s at the start (load ${env.fsyncBefore.load.toFixed(1)}), ${env.fsyncAfter.perSecond.toFixed(0)}/s at the end (load ${env.fsyncAfter.load.toFixed(1)}).`,
  );
  if (env.rebuiltDuringRun)
    console.log('WARNING: dist/ was rebuilt during the run: the figures may mix two builds of agentvm.');
  for (const r of report) {
    const g = r.growth;
    const head = ['figure', 'agentvm', 'terraform', 'agentvm/tf', 'load avm', 'load tf'];
    if (g) head.push(`agentvm growth`, `tf growth`);
    const widths = [36, 12, 12, 11, 11, 11, 15, 12];
    console.log('');
    const kinds = Object.entries(r.agentvm.byProvider)
      .map(([p, c]) => `${c} ${p}`)
      .join(' + ');
    console.log(
      `N = ${r.n} workloads on one host: agentvm ${r.agentvm.resources ?? '?'} resources${kinds ? ` (${kinds})` : ''}; terraform ${r.terraform.resources} terraform_data${g ? `; growth = figure / figure at N=${g.from} (${g.sizeFactor}× workloads)` : ''}`,
    );
    console.log(row(head, widths));
    const tfApply = r.terraform.applySkipped ? 'skipped' : s(r.terraform.applyCreate);
    const ld = (loads, key) => (loads?.[key] ? loads[key].map((v) => v.toFixed(1)).join('→') : '');
    const lines = [
      [
        'plan, all create, cold cache',
        s(r.agentvm.planCreateCold),
        s(r.terraform.planCreate),
        x(r.ratio.planCreateCold),
        'planCreateCold',
        'planCreate',
      ],
      [
        'plan, all create',
        s(r.agentvm.planCreate),
        s(r.terraform.planCreate),
        x(r.ratio.planCreate),
        'planCreate',
        'planCreate',
      ],
      ['apply, all create', s(r.agentvm.applyCreate), tfApply, x(r.ratio.applyCreate), 'applyCreate', 'applyCreate'],
      [
        '  resources/s',
        rate(r.agentvm.applyRate),
        r.terraform.applySkipped ? 'skipped' : rate(r.terraform.applyRate),
        x(div(r.agentvm.applyRate, r.terraform.applyRate)),
        undefined,
        undefined,
      ],
      [
        `apply, all create, --concurrency ${opts.extraConcurrency}`,
        s(r.agentvm.applyCreateExtra),
        tfApply,
        x(r.ratio.applyCreateExtra),
        'applyCreateExtra',
        'applyCreate',
      ],
      [
        `no-op plan${r.terraform.planNoopOnSynthesizedState ? ' (tf: synth. state)' : ''}`,
        s(r.agentvm.planNoop),
        s(r.terraform.planNoop),
        x(r.ratio.planNoop),
        'planNoop',
        'planNoop',
      ],
      [
        'no-op plan, stat index off',
        s(r.agentvm.planNoopNoIndex),
        s(r.terraform.planNoop),
        x(r.ratio.planNoopNoIndex),
        'planNoopNoIndex',
        'planNoop',
      ],
    ];
    for (const [label, a, t, ratio, key, tfKey] of lines) {
      const cells = [label, a, t, ratio, key ? ld(r.agentvm.load, key) : '', tfKey ? ld(r.terraform.load, tfKey) : ''];
      if (g) cells.push(key ? x(g.agentvm[key]) : '', key ? x(g.terraform[key]) : '');
      console.log(row(cells, widths));
    }
    if (r.agentvm.applyReported)
      console.log(
        `agentvm apply's own summary: ${r.agentvm.applyReported.applied} applied, ${r.agentvm.applyReported.failed} failed, ${r.agentvm.applyReported.skipped} skipped in ${r.agentvm.applyReported.seconds}s (in-process)`,
      );
    const floor = syncFloor(env, r.agentvm.resources);
    if (floor !== null)
      console.log(
        `fsync floor of one sync pair per resource (2 × ${r.agentvm.resources} / ${floor.rate.toFixed(0)} syncs/s, the slower probe): ${floor.seconds.toFixed(1)} s = ${x(div(floor.seconds, r.terraform.applyCreate))} Terraform's apply; agentvm's apply is ${x(div(r.agentvm.applyCreate, floor.seconds))} of it (${x(div(r.agentvm.applyCreateExtra, floor.seconds))} with --concurrency ${opts.extraConcurrency}). Group commit (ADR 0026) pays one pair per group of resources that finish together, so an apply may go below it.`,
      );
    for (const w of r.agentvm.warnings) console.log(`agentvm plan warning: ${w}`);
    for (const e of [...r.agentvm.errors, ...r.terraform.errors])
      console.log(`FAILED ${e.split('\n').slice(0, 8).join('\n  ')}`);
  }
}
