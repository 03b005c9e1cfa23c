// The pull-request bot (examples/ci) through the real CLI, real git and the real release providers: a 300-workload
// change fits one comment and says what was cut; the workflow's own render and fail steps (run with bash, exactly
// as written in pr-plan.yml) post findings first and fail on policy errors; the render script prints exactly what
// `agentvm plan --format markdown` prints; a host root snapshot (tarball) plans like the host root itself.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { agentvm, assertBuilt, ROOT } from './support/cli.js';
import { fleetCopy, type FleetCopy } from './support/fleet.js';

const SCRIPT = join(ROOT, 'scripts', 'render-pr-comment.js');
const GIT_ENV = {
  ...process.env,
  GIT_AUTHOR_NAME: 't',
  GIT_AUTHOR_EMAIL: 't@agentvm.invalid',
  GIT_COMMITTER_NAME: 't',
  GIT_COMMITTER_EMAIL: 't@agentvm.invalid',
  GIT_CONFIG_NOSYSTEM: '1',
  GIT_CONFIG_GLOBAL: '/dev/null',
};

interface Step {
  name?: string;
  run?: string;
  id?: string;
}

function workflowStep(name: string): Step {
  const wf = parse(readFileSync(join(ROOT, 'examples', 'ci', 'pr-plan.yml'), 'utf8')) as {
    jobs: { plan: { steps: Step[] } };
  };
  const step = wf.jobs.plan.steps.find((s) => s.name === name);
  if (!step?.run) throw new Error(`pr-plan.yml has no run step named "${name}"`);
  return step;
}

/** Runs a workflow step's script with bash in `cwd`, with the env GitHub Actions would give it. */
function runStep(step: Step, cwd: string, env: Record<string, string>, expressions: Record<string, string> = {}) {
  let script = step.run!;
  for (const [expr, value] of Object.entries(expressions)) script = script.replaceAll(`\${{ ${expr} }}`, value);
  expect(script, 'unsubstituted ${{ }} expression in the step').not.toMatch(/\$\{\{/);
  return spawnSync('bash', ['-e', '-c', script], {
    cwd,
    env: { ...process.env, NO_COLOR: '1', ...env },
    encoding: 'utf8',
    timeout: 120_000,
  });
}

/** Lays out a desired-state repo the way the workflow sees it after `npm ci`: node_modules/agentvm is this package. */
function asCheckout(repo: string): void {
  if (existsSync(join(repo, 'node_modules', 'agentvm'))) return;
  mkdirSync(join(repo, 'node_modules'), { recursive: true });
  symlinkSync(ROOT, join(repo, 'node_modules', 'agentvm'));
}

function balanced(md: string): { details: number; closed: number; fences: number } {
  const fences = md.split('\n').filter((l) => /^`{3,}/.test(l)).length;
  return {
    details: (md.match(/^<details>/gm) ?? []).length,
    closed: (md.match(/^<\/details>$/gm) ?? []).length,
    fences,
  };
}

describe('pull-request plan comment', () => {
  const temps: string[] = [];
  let fleet: FleetCopy;

  beforeAll(() => {
    assertBuilt();
    fleet = fleetCopy();
  });
  afterAll(() => {
    fleet?.cleanup();
    for (const t of temps) rmSync(t, { recursive: true, force: true });
  });

  it('GIVEN a 300-workload change WHEN plan --format markdown THEN it stays under 65,536 characters, is well-formed and says what was cut', async () => {
    const repo = mkdtempSync(join(tmpdir(), 'agentvm-pr-300-'));
    temps.push(repo);
    const names = Array.from({ length: 300 }, (_, i) => `w-${String(i).padStart(3, '0')}`);
    for (const [i, name] of names.entries()) {
      mkdirSync(join(repo, 'workloads', name), { recursive: true });
      writeFileSync(
        join(repo, 'workloads', name, 'contract.yaml'),
        `apiVersion: agentvm.dev/v1alpha1\nkind: WorkloadContract\nmetadata:\n  name: ${name}\nspec:\n  owner: team@example.com\n  riskTier: low\n  substrate: service\n  secrets:\n    - name: token\n      ref: file:/etc/agentvm/secrets/${name}\n`,
      );
      writeFileSync(
        join(repo, 'workloads', name, 'manifest.yaml'),
        `apiVersion: agentvm.dev/v1alpha1\nkind: WorkloadManifest\nmetadata:\n  name: ${name}\nspec:\n  archetype: git-release\n  source:\n    git:\n      repo: https://git.example.com/agents/${name}.git\n      commit: ${'0123456789abcdef'.repeat(3).slice(0, 40)}\n  profiles:\n    - name: p-${name}\n      entrypoint: [python3, -m, orchestrator]\n      env:\n        MODE: review\n      listen:\n        port: ${20000 + i}\n      health:\n        path: /healthz\n`,
      );
    }
    mkdirSync(join(repo, 'hosts'));
    writeFileSync(
      join(repo, 'hosts', 'big.yaml'),
      `apiVersion: agentvm.dev/v1alpha1\nkind: Host\nmetadata:\n  name: big\nspec:\n  workloads:\n${names.map((n) => `    - ${n}`).join('\n')}\n`,
    );
    execFileSync('git', ['init', '-q', '-b', 'main'], { cwd: repo, env: GIT_ENV });
    execFileSync('git', ['add', '-A'], { cwd: repo, env: GIT_ENV });
    execFileSync('git', ['commit', '-q', '-m', '300 workloads'], { cwd: repo, env: GIT_ENV });

    const t0 = performance.now();
    temps.push(`${repo}-root`);
    const r = await agentvm([
      'plan',
      '--repo',
      repo,
      '--host',
      'big',
      '--root',
      `${repo}-root`,
      '--format',
      'markdown',
    ]);
    const seconds = (performance.now() - t0) / 1000;
    expect(r.code, r.stderr).toBe(0);
    const md = r.stdout;
    console.info(`pr-comment: 300-workload markdown plan ${md.length} characters in ${seconds.toFixed(2)} s`);
    expect(md.length).toBeLessThan(65_536);
    expect(md.startsWith('<!-- agentvm-plan:big -->\n')).toBe(true);
    expect(md).toContain('601 to create'); // 300 releases, 300 units, and the host's egress proxy
    const b = balanced(md);
    expect(b.details).toBe(b.closed);
    expect(b.fences % 2).toBe(0);
    expect(b.details).toBeGreaterThan(50);
    expect(b.details).toBeLessThan(300);
    // 300 workloads and the host-level block `(host)` (the egress proxy), which sorts first.
    expect(md).toContain(`${301 - b.details} of 301 workload block(s)`);
    expect(md).toContain('agentvm plan --format json');
    // Whole blocks only: every block shown is complete (its table has both of the workload's resources).
    for (const name of names.slice(0, b.details - 1)) {
      expect(md).toContain(`\`release.${name}\``);
      expect(md).toContain(`\`unit.${name}.p-${name}\``);
    }
    expect(md).not.toContain(`<code>${names[b.details - 1]}</code>`);
  });

  it('GIVEN a policy error WHEN the workflow renders the comment THEN findings come first and its fail step exits non-zero', async () => {
    const bad = fleetCopy();
    temps.push(bad.base);
    const contract = join(bad.repo, 'workloads', 'agent-pool', 'contract.yaml');
    writeFileSync(contract, `${readFileSync(contract, 'utf8')}  untrustedInputs: [email]\n`);
    bad.git('commit', '-q', '-am', 'agent-pool reads email (not allowed at moderate)');
    asCheckout(bad.repo);
    const runnerTemp = join(bad.base, 'runner-temp');
    mkdirSync(runnerTemp);
    const output = join(runnerTemp, 'github-output');
    writeFileSync(output, '');
    const env = { HOST: 'edge-1', AGENTVM_SNAPSHOT_ROOT: bad.root, RUNNER_TEMP: runnerTemp, GITHUB_OUTPUT: output };

    const render = runStep(workflowStep('Plan and render the comment'), bad.repo, env);
    expect(render.status, render.stderr).toBe(0); // the step never fails: the comment is posted first
    expect(readFileSync(output, 'utf8')).toBe('code=1\n');
    const md = readFileSync(join(runnerTemp, 'comment-edge-1.md'), 'utf8');
    const plan = JSON.parse(readFileSync(join(runnerTemp, 'plan-edge-1.json'), 'utf8')) as {
      summary: { errors: number };
    };
    expect(plan.summary.errors).toBeGreaterThan(0);
    expect(md.split('\n')[0]).toBe('<!-- agentvm-plan:edge-1 -->');
    expect(md).toContain('❌ blocked by policy');
    const findings = md.indexOf('#### Policy findings');
    const firstError = md.indexOf('**error**');
    const firstWarning = md.indexOf('**warning**');
    expect(findings).toBeGreaterThan(0);
    expect(firstError).toBeGreaterThan(findings);
    if (firstWarning >= 0) expect(firstError).toBeLessThan(firstWarning);
    expect(findings).toBeLessThan(md.indexOf('#### Changes'));

    const fail = runStep(workflowStep('Fail on policy errors'), bad.repo, env, { 'steps.render.outputs.code': '1' });
    expect(fail.status).toBe(1);
    expect(fail.stdout).toMatch(new RegExp(`policy errors: ${plan.summary.errors} \\(exit 1\\)`));
  });

  it('GIVEN an applied host and a changed commit THEN the render script prints exactly `agentvm plan --format markdown`, and a snapshot tarball plans the same', async () => {
    const apply = await agentvm([
      'apply',
      '--repo',
      fleet.repo,
      '--host',
      'edge-1',
      '--root',
      fleet.root,
      '--auto-approve',
    ]);
    expect(apply.code, apply.stdout + apply.stderr).toBe(0);
    const manifest = join(fleet.repo, 'workloads', 'agent-pool', 'manifest.yaml');
    const text = readFileSync(manifest, 'utf8');
    expect(text).toMatch(/AGENT_POOL_SIZE: "?2"?/);
    writeFileSync(manifest, text.replace(/AGENT_POOL_SIZE: "?2"?/, 'AGENT_POOL_SIZE: "4"'));
    fleet.git('commit', '-q', '-am', 'bigger pool');

    const cli = await agentvm([
      'plan',
      '--repo',
      fleet.repo,
      '--host',
      'edge-1',
      '--root',
      fleet.root,
      '--format',
      'markdown',
    ]);
    expect(cli.code, cli.stderr).toBe(0);
    const script = spawnSync(
      process.execPath,
      [SCRIPT, '--repo', fleet.repo, '--host', 'edge-1', '--root', fleet.root],
      { encoding: 'utf8' },
    );
    expect(script.status, script.stderr).toBe(0);
    expect(script.stdout).toBe(cli.stdout);
    expect(cli.stdout).toContain('1 to update');
    expect(cli.stdout).toContain('+config.env.AGENT_POOL_SIZE = "4"');
    expect(cli.stdout).toContain('-config.env.AGENT_POOL_SIZE = "2"');

    // The bot plans against a snapshot of the host root, taken as the README says and unpacked as the workflow does.
    const tarball = join(fleet.base, 'agentvm-root-edge-1.tar.gz');
    execFileSync('tar', ['-C', fleet.root, '-czf', tarball, 'var/lib/agentvm', 'etc']);
    const snapshot = join(fleet.base, 'snapshot-root');
    mkdirSync(snapshot);
    execFileSync('tar', ['-xzf', tarball, '-C', snapshot]);
    const fromSnapshot = spawnSync(
      process.execPath,
      [SCRIPT, '--repo', fleet.repo, '--host', 'edge-1', '--root', snapshot],
      { encoding: 'utf8' },
    );
    expect(fromSnapshot.status, fromSnapshot.stderr).toBe(0);
    // Same plan but for the root's path (in findings) and hence the plan id.
    const normal = (md: string, root: string) =>
      md.replaceAll(root, '<root>').replace(/plan `sha256:[0-9a-f]+`/, 'plan <id>');
    expect(normal(fromSnapshot.stdout, snapshot)).toBe(normal(cli.stdout, fleet.root));
  });
});
