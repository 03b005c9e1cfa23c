// The interactive terminal UI through the real, built CLI (issue 8): node-pty gives agentvm a pseudo-terminal, so
// it takes the interactive path (ink views, the approval prompt); the same commands under a pipe must print plain
// text with no escape codes, never ask, and never load ink or react. A module-resolution hook (node --import)
// records whether ink/react were loaded, checked both ways so the check itself can fail.

import { appendFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { agentvm, assertBuilt } from './support/cli.js';
import { fleetCopy, type FleetCopy } from './support/fleet.js';
import { agentvmPty, stripAnsi, type PtyRun } from './support/pty.js';

const ESC = '\u001b';
const PROMPT = "Apply these changes to edge-1? Only 'yes' is accepted:";

let fleet: FleetCopy;
let hookDir: string;
let roots = 0;
const runs: PtyRun[] = [];

/** A fresh host root per test, so each starts from "first apply". */
function freshRoot(): string {
  return join(fleet.base, `root-${++roots}`);
}

/** Node flags that record every import of ink, react (and, to prove the hook is active, @oclif/core) into `trace`. */
function traceInk(trace: string): { nodeArgs: string[]; env: NodeJS.ProcessEnv; loaded: () => string[] } {
  return {
    nodeArgs: ['--import', join(hookDir, 'register.mjs')],
    env: { AGENTVM_TEST_IMPORT_TRACE: trace },
    loaded: () => (existsSync(trace) ? readFileSync(trace, 'utf8').split('\n').filter(Boolean) : []),
  };
}

function pty(args: string[], opts: Parameters<typeof agentvmPty>[1] = {}): PtyRun {
  const run = agentvmPty(args, opts);
  runs.push(run);
  return run;
}

/** A person's environment, but behind pipes: no CI, no NO_COLOR (agentvm() sets both unless told otherwise). */
const pipeEnv: NodeJS.ProcessEnv = {
  CI: undefined,
  NO_COLOR: undefined,
  FORCE_COLOR: undefined,
  TERM: 'xterm-256color',
};

/** How many creates the plan on screen announced (the example fleet grows; the tests must not pin its size). */
function creates(text: string): number {
  const m = /Plan: (\d+) to create/.exec(text);
  expect(m, text).not.toBeNull();
  return Number(m![1]);
}

function nothingApplied(root: string): void {
  expect(existsSync(join(root, 'var/lib/agentvm/state/edge-1.lock.json'))).toBe(false);
  expect(existsSync(join(root, 'var/lib/agentvm/releases'))).toBe(false);
  expect(existsSync(join(root, 'var/log/agentvm/audit.jsonl'))).toBe(false);
  expect(existsSync(join(root, 'etc/systemd'))).toBe(false);
}

describe('interactive plan and apply in a pseudo-terminal', () => {
  beforeAll(() => {
    assertBuilt();
    fleet = fleetCopy();
    hookDir = mkdtempSync(join(tmpdir(), 'agentvm-tty-hooks-'));
    writeFileSync(
      join(hookDir, 'register.mjs'),
      "import { register } from 'node:module';\nregister('./hooks.mjs', import.meta.url);\n",
    );
    writeFileSync(
      join(hookDir, 'hooks.mjs'),
      `import { appendFileSync } from 'node:fs';
export async function resolve(specifier, context, next) {
  if (/^(ink|react|@oclif\\/core)(\\/|$)/.test(specifier) && process.env.AGENTVM_TEST_IMPORT_TRACE) appendFileSync(process.env.AGENTVM_TEST_IMPORT_TRACE, specifier + '\\n');
  return next(specifier, context);
}
`,
    );
  });
  afterEach(() => {
    for (const r of runs.splice(0)) r.kill();
  });
  afterAll(() => {
    fleet?.cleanup();
    if (hookDir) rmSync(hookDir, { recursive: true, force: true });
  });

  it('GIVEN a terminal WHEN plan THEN the ink view groups changes by host and workload, in colour, and exits', async () => {
    const root = freshRoot();
    const trace = traceInk(join(fleet.base, 'trace-plan-tty'));
    const run = pty(['plan', '--repo', fleet.repo, '--host', 'edge-1', '--root', root], {
      nodeArgs: trace.nodeArgs,
      env: trace.env,
    });
    expect(await run.exit(60_000), run.text).toBe(0);
    const text = run.text;
    const n = creates(text);
    expect(text).toContain('Plan for host edge-1');
    // The changes sit under their host, then their workload; the summary closes the view.
    const at = (s: string) => text.indexOf(s);
    expect(at(`Host edge-1 (${n} change(s))`)).toBeGreaterThan(-1);
    expect(at('Workload agent-pool')).toBeGreaterThan(at(`Host edge-1 (${n} change(s))`));
    expect(at('Workload research-orchestrator')).toBeGreaterThan(at('Workload agent-pool'));
    expect(at('Workload transcript-summarizer')).toBeGreaterThan(at('Workload research-orchestrator'));
    expect(text).toMatch(/\+ release\.agent-pool {2}create {2}effect: restart/);
    expect(at(`Plan: ${n} to create`)).toBeGreaterThan(at('Workload transcript-summarizer'));
    expect(run.raw).toContain(`${ESC}[32m`); // green for create
    expect(trace.loaded()).toContain('ink');
  });

  it('GIVEN a policy error WHEN plan and apply on a terminal THEN findings come first, and apply refuses without asking', async () => {
    const root = freshRoot();
    const bad = fleetCopy();
    try {
      appendFileSync(join(bad.repo, 'workloads/agent-pool/contract.yaml'), '  untrustedInputs:\n    - email\n');
      bad.git('commit', '-q', '-am', 'agent-pool reads email at riskTier moderate');
      const plan = pty(['plan', '--repo', bad.repo, '--host', 'edge-1', '--root', root]);
      expect(await plan.exit(60_000), plan.text).toBe(1);
      const text = plan.text;
      expect(text).toMatch(/Policy and validation: 1 error\(s\)/);
      expect(text.indexOf('✗ error[policy.untrusted-input-tier]')).toBeGreaterThan(
        text.indexOf('Policy and validation'),
      );
      expect(text.indexOf('Host edge-1')).toBeGreaterThan(text.indexOf('policy.untrusted-input-tier'));
      expect(text).toContain('This plan has errors and cannot be applied.');

      const apply = pty(['apply', '--repo', bad.repo, '--host', 'edge-1', '--root', root]);
      expect(await apply.exit(60_000), apply.text).toBe(1);
      expect(apply.text).toContain('apply.plan-has-errors');
      expect(apply.text).not.toContain(PROMPT);
      nothingApplied(root);
    } finally {
      bad.cleanup();
    }
  });

  it('GIVEN a pipe WHEN plan and apply THEN plain text, no escape codes, no prompt, and ink is never loaded', async () => {
    const root = freshRoot();
    const trace = traceInk(join(fleet.base, 'trace-pipe'));
    const node = { env: { ...pipeEnv, ...trace.env, NODE_OPTIONS: trace.nodeArgs.join(' ') } };
    const plan = await agentvm(['plan', '--repo', fleet.repo, '--host', 'edge-1', '--root', root], node);
    expect(plan.code, plan.stderr).toBe(0);
    expect(plan.stdout).toContain('+ release.agent-pool');
    expect(plan.stdout + plan.stderr).not.toContain(ESC);

    // No plan file, no --auto-approve: refused, never asked; and `yes` on a pipe approves nothing.
    for (const input of ['', 'yes\n']) {
      const refused = await agentvm(['apply', '--repo', fleet.repo, '--host', 'edge-1', '--root', root], {
        ...node,
        input,
      });
      expect(refused.code).toBe(1);
      expect(refused.stderr).toContain('apply.needs-approval');
      expect(refused.stdout + refused.stderr).not.toContain("Only 'yes' is accepted");
      expect(refused.stdout + refused.stderr).not.toContain(ESC);
      nothingApplied(root);
    }

    const applied = await agentvm(
      ['apply', '--repo', fleet.repo, '--host', 'edge-1', '--root', root, '--auto-approve'],
      node,
    );
    expect(applied.code, applied.stderr).toBe(0);
    expect(applied.stdout).toContain(`Apply complete: ${creates(plan.stdout)} applied`);
    expect(applied.stdout + applied.stderr).not.toContain(ESC);
    // The hook was active (it saw the CLI import oclif) and saw no import of ink or react.
    expect(trace.loaded()).toContain('@oclif/core');
    expect(trace.loaded().filter((s) => /^(ink|react)(\/|$)/.test(s))).toEqual([]);
  });

  it('GIVEN a terminal WHEN apply without a plan file and the answer is `no` THEN it is cancelled, exit 1, nothing changed', async () => {
    const root = freshRoot();
    const run = pty(['apply', '--repo', fleet.repo, '--host', 'edge-1', '--root', root]);
    await run.waitFor(PROMPT, 60_000);
    expect(run.text.indexOf('Workload agent-pool')).toBeLessThan(run.text.indexOf(PROMPT));
    run.write('no\r');
    expect(await run.exit()).toBe(1);
    expect(run.text).toContain('Apply cancelled; nothing changed.');
    nothingApplied(root);
  });

  it('GIVEN `yes` typed before the plan is on the screen WHEN the prompt appears THEN the typed-ahead answer is discarded, not taken', async () => {
    const root = freshRoot();
    const run = pty(['apply', '--repo', fleet.repo, '--host', 'edge-1', '--root', root]);
    // Typed (or pasted) at once, long before the plan is drawn and the question asked.
    run.write('yes\r');
    await run.waitFor(PROMPT, 60_000);
    run.write('no\r');
    expect(await run.exit(), run.text).toBe(1);
    expect(run.text).toContain('Apply cancelled; nothing changed.');
    nothingApplied(root);
  });

  it('GIVEN the prompt WHEN the answer is ` yes ` (not exactly `yes`) THEN it is cancelled', async () => {
    const root = freshRoot();
    const run = pty(['apply', '--repo', fleet.repo, '--host', 'edge-1', '--root', root]);
    await run.waitFor(PROMPT, 60_000);
    run.write(' yes \r');
    expect(await run.exit(), run.text).toBe(1);
    nothingApplied(root);
  });

  for (const [key, name] of [
    ['\u0004', 'input ends (Ctrl-D)'],
    ['\u0003', 'Ctrl-C is pressed'],
  ] as const) {
    it(`GIVEN the prompt WHEN ${name} THEN it is cancelled, exit 1, nothing changed`, async () => {
      const root = freshRoot();
      const run = pty(['apply', '--repo', fleet.repo, '--host', 'edge-1', '--root', root]);
      await run.waitFor(PROMPT, 60_000);
      run.write(key);
      expect(await run.exit()).toBe(1);
      expect(run.text).toContain('Apply cancelled; nothing changed.');
      nothingApplied(root);
    });
  }

  it('GIVEN the prompt WHEN the answer is `yes` THEN exactly the shown plan is applied under the progress view, ending in the summary', async () => {
    const root = freshRoot();
    const run = pty(['apply', '--repo', fleet.repo, '--host', 'edge-1', '--root', root]);
    await run.waitFor(PROMPT, 60_000);
    const shownPlanId = /; plan ([0-9a-f]{12})/.exec(run.text)?.[1];
    expect(shownPlanId).toBeDefined();
    run.write('yes\r');
    expect(await run.exit(), run.text).toBe(0);
    const text = run.text;
    const after = text.slice(text.indexOf(PROMPT));
    expect(after).toContain(`Applying plan ${shownPlanId} to host edge-1`);
    for (const address of [
      'release.agent-pool',
      'unit.agent-pool.pool',
      'release.research-orchestrator',
      'job.transcript-summarizer.summarize',
    ]) {
      expect(after).toMatch(new RegExp(`✓ ${address.replace(/\./g, '\\.')} {2}created {2}\\d+\\.\\ds`));
    }
    const summary = after.indexOf(`Apply complete: ${creates(text)} applied, 0 failed, 0 skipped`);
    expect(summary).toBeGreaterThan(after.lastIndexOf('✓ '));
    expect(existsSync(join(root, 'var/lib/agentvm/state/edge-1.lock.json'))).toBe(true);
    const audit = readFileSync(join(root, 'var/log/agentvm/audit.jsonl'), 'utf8');
    expect(audit).toContain(`"detail":"plan sha256:${shownPlanId}`);

    // Nothing left to do: the plan says so and nobody is asked.
    const again = pty(['apply', '--repo', fleet.repo, '--host', 'edge-1', '--root', root]);
    expect(await again.exit(60_000), again.text).toBe(0);
    expect(again.text).toContain('No changes: the host matches the desired state');
    expect(again.text).toContain('Nothing to apply.');
    expect(again.text).not.toContain(PROMPT);
  });

  it('GIVEN the prompt WHEN the desired state moves on before `yes` THEN the shown plan is refused as stale, not re-planned', async () => {
    const root = freshRoot();
    const run = pty(['apply', '--repo', fleet.repo, '--host', 'edge-1', '--root', root]);
    await run.waitFor(PROMPT, 60_000);
    fleet.git('commit', '-q', '--allow-empty', '-m', 'moved on while the operator was reading');
    run.write('yes\r');
    expect(await run.exit(), run.text).toBe(1);
    expect(run.text).toContain('apply.stale-plan');
    expect(existsSync(join(root, 'var/lib/agentvm/state/edge-1.lock.json'))).toBe(false);
    expect(existsSync(join(root, 'var/lib/agentvm/releases'))).toBe(false);
  });

  it('GIVEN a terminal WHEN apply --auto-approve THEN the progress view runs with no prompt and ends in the summary', async () => {
    const root = freshRoot();
    const run = pty([
      'apply',
      '--repo',
      fleet.repo,
      '--host',
      'edge-1',
      '--root',
      root,
      '--auto-approve',
      '--concurrency',
      '1',
    ]);
    expect(await run.exit(60_000), run.text).toBe(0);
    const text = run.text;
    expect(text).not.toContain(PROMPT);
    expect(text).toMatch(/Applying plan [0-9a-f]{12} to host edge-1/);
    expect(text).toMatch(/✓ unit\.research-orchestrator\.core {2}created/);
    expect(text.indexOf('Apply complete: ')).toBeGreaterThan(text.lastIndexOf('✓ '));
    expect(text).toMatch(/Apply complete: \d+ applied, 0 failed, 0 skipped/);
    expect(existsSync(join(root, 'var/lib/agentvm/state/edge-1.lock.json'))).toBe(true);
  });
});

// Keeps the helper honest: escape codes are what the pipe assertions look for, and stripAnsi must remove them.
describe('stripAnsi', () => {
  it('removes colour, cursor and synchronised-output sequences and keeps the text', () => {
    expect(stripAnsi(`${ESC}[?2026h${ESC}[1mPlan${ESC}[22m ${ESC}[2K${ESC}[1A${ESC}[Gok${ESC}[?25h`)).toBe('Plan ok');
  });
});
