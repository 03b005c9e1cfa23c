// `agentvm agent`: pull mode on one host (ADR 0017). One run (the shipped agentvm-agent.timer repeats it):
//   1. fetch the desired repository and resolve --ref to a commit;
//   2. plan this host (reading it, as `agentvm plan` does);
//   3. apply when the plan has no policy errors and the fleet's rollout lets this host's wave go (rollout.ts);
//   4. check health (units online, plus --health-check when given);
//   5. publish to the shared backend: applied commit, the commit it is moving to, plan summary, drift, health, live
//      fingerprint and the provider reads a remote plan needs. Never a secret value (remote-plan.ts).
// A run that fails still publishes what it knows (status failed, the error's code and message), so the fleet view and
// later waves see it; a run killed mid-apply publishes nothing and its next run resumes the apply (ADR 0005).

import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { AgentvmError } from '../diagnostics/index.js';
import type { AgentReportDocument } from '../generated/agent-result.js';
import { hasChanges, type Plan, type PlanSummary } from '../engine/plan.js';
import { gatewayOnline } from '../providers/systemd/index.js';
import { hostPaths } from '../model/index.js';
import { runApply, type ApplyResult } from './apply.js';
import { makePlan, type PlanSession } from './plan.js';
import { publishableReads, sharedBackend } from './remote-plan.js';
import { rolloutGate, type Gate, type RolloutConfig } from './rollout.js';

export interface AgentOptions {
  /** URL or path of the desired-state repository. */
  repo: string;
  ref: string;
  host: string;
  root: string;
  /** A shell command run after apply; exit 0 = healthy, else its last output line is the reason (bounded). */
  healthCheck?: string;
  concurrency?: number;
}

export type AgentStatus = 'applied' | 'no-changes' | 'blocked' | 'waiting' | 'excluded' | 'failed';

export interface AgentHealth {
  ok: boolean;
  /** Units that exist but are not online. */
  failing: string[];
  reason?: string;
}

/** What the agent publishes without the reads (also its --json result). */
export interface AgentReport {
  formatVersion: 1;
  host: string;
  /** The commit this host has applied (its lockfile's), after this run. */
  commit: string | null;
  /** The commit --ref resolved to: where the host is going. */
  target: string | null;
  status: AgentStatus;
  reason?: string;
  wave?: string;
  plan?: { id: string; summary: PlanSummary };
  apply?: { status: ApplyResult['status']; applied: number; failed: number };
  drift: string[];
  health: AgentHealth;
  liveFingerprint: string | null;
  error?: { code: string; message: string };
}

// The published report must stay what schemas/agent-result.schema.json says (this fails to compile otherwise).
const _matchesSchema = (r: AgentReport): AgentReportDocument => r;
void _matchesSchema;

export async function runAgent(opts: AgentOptions): Promise<AgentReport> {
  const backend = sharedBackend(opts.root, '`agentvm agent`');
  let target: string | null = null;
  let report: AgentReport;
  let reads: ReturnType<typeof publishableReads> | undefined;
  try {
    const desired = await fetchDesired(opts.repo, opts.ref, path.join(hostPaths(opts.root).cache, 'agent', 'desired'));
    target = desired.commit;
    let session = await makePlan({ repo: desired.dir, ref: desired.commit, host: opts.host, root: opts.root });
    const errors = session.plan.diagnostics.filter((d) => d.severity === 'error');
    let status: AgentStatus;
    let reason: string | undefined;
    let gate: Gate | undefined;
    let applied: ApplyResult | undefined;
    if (errors.length > 0) {
      status = 'blocked';
      reason = `${errors.length} policy error(s): ${errors[0]!.code} ${errors[0]!.summary}`.slice(0, 500);
    } else if (
      !hasChanges(session.plan) &&
      session.lock?.commit === desired.commit &&
      !(await backend.readJournal(opts.host))
    ) {
      status = 'no-changes';
    } else {
      // Changes to make — or none, but the commit is not recorded yet (a commit that does not touch this host, or an
      // apply killed after its last resource): an apply records it and closes an interrupted log.
      const rollout =
        (session.state.config?.value as { spec?: { rollout?: RolloutConfig } } | undefined)?.spec?.rollout ?? {};
      gate = rolloutGate(rollout, opts.host, desired.commit, await backend.fleetRows());
      if (!gate.allowed) {
        status = gate.state === 'excluded' ? 'excluded' : 'waiting';
        reason = gate.reason;
      } else {
        applied = await runApply({
          root: opts.root,
          approvedPlan: session.plan,
          operation: 'agent',
          concurrency: opts.concurrency ?? 4,
        });
        status = applied.status === 'partial' ? 'failed' : applied.status === 'no-changes' ? 'no-changes' : 'applied';
        if (applied.status === 'partial')
          reason = applied.failed
            .map((f) => `${f.address}: ${f.diagnostics.find((d) => d.severity === 'error')?.summary ?? 'failed'}`)
            .join('; ')
            .slice(0, 500);
        // Re-read the host: what is published is the state after the apply.
        session = await makePlan({ repo: desired.dir, ref: desired.commit, host: opts.host, root: opts.root });
      }
    }
    reads = publishableReads(session.reads);
    const health = await checkHealth(session, opts, desired.commit);
    report = {
      formatVersion: 1,
      host: opts.host,
      commit: session.lock?.commit ?? null,
      target,
      status,
      ...(reason ? { reason } : {}),
      ...(gate ? { wave: gate.wave } : {}),
      plan: { id: session.plan.id, summary: session.plan.summary },
      ...(applied
        ? { apply: { status: applied.status, applied: applied.applied.length, failed: applied.failed.length } }
        : {}),
      drift: session.plan.drift.map((d) => d.address),
      health,
      liveFingerprint: session.plan.liveFingerprint,
    };
  } catch (error) {
    const e =
      error instanceof AgentvmError
        ? error
        : new AgentvmError('internal', error instanceof Error ? error.message : String(error), { source: 'toolkit' });
    const lock = await backend.readLockfile(opts.host).catch(() => null);
    report = {
      formatVersion: 1,
      host: opts.host,
      commit: lock?.commit ?? null,
      target,
      status: 'failed',
      reason: e.message.slice(0, 500),
      drift: [],
      health: { ok: false, failing: [], reason: `agent run failed: ${e.code}` },
      liveFingerprint: null,
      error: { code: e.code, message: e.message.slice(0, 500) },
    };
    await backend.publishFacts(opts.host, report.commit, report.status, report).catch(() => undefined);
    throw error;
  }
  await backend.publishFacts(opts.host, report.commit, report.status, { ...report, ...(reads ? { reads } : {}) });
  return report;
}

/** Units that exist must be online; then the operator's check, when given. */
async function checkHealth(session: PlanSession, opts: AgentOptions, commit: string): Promise<AgentHealth> {
  // Units under a running manager must have their main process; a root rendered offline (no manager: a simulated or
  // image root) has nothing running to check, which is not a failure of the host.
  const failing = [...session.reads.live.values()]
    .filter(
      (l) =>
        l.address.startsWith('unit.') &&
        l.exists &&
        gatewayOnline(l) &&
        (l.attributes as { running?: unknown } | undefined)?.running == null,
    )
    .map((l) => l.address);
  if (failing.length)
    return { ok: false, failing, reason: `${failing.length} unit(s) not online: ${failing.slice(0, 5).join(', ')}` };
  if (!opts.healthCheck) return { ok: true, failing };
  const r = await runCheck(opts.healthCheck, {
    AGENTVM_HOST: opts.host,
    AGENTVM_ROOT: path.resolve(opts.root),
    AGENTVM_COMMIT: commit,
  });
  return r.code === 0
    ? { ok: true, failing }
    : { ok: false, failing, reason: `health check exited ${r.code}: ${r.lastLine}`.slice(0, 300) };
}

function runCheck(command: string, env: Record<string, string>): Promise<{ code: number; lastLine: string }> {
  return new Promise((resolve) => {
    const child = spawn('/bin/sh', ['-c', command], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    const keep = (d: Buffer) => (out = (out + d.toString('utf8')).slice(-4096));
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({
        code: code ?? 128,
        lastLine: out.trim().split('\n').pop()?.slice(0, 200) ?? (signal ? `killed by ${signal}` : ''),
      });
    });
    child.on('error', () => resolve({ code: 127, lastLine: 'cannot run the health check' }));
  });
}

/** Clones (once) and fetches the desired repository into `dir`; resolves `ref` (a branch of the remote, a tag or a commit). */
export async function fetchDesired(repo: string, ref: string, dir: string): Promise<{ dir: string; commit: string }> {
  // A local repository is read where it is (its refs are kept current by whoever owns it, and manifests may name
  // artifacts by paths relative to it); only a URL is fetched into the host's cache.
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(repo) && !/^[^/]+@[^:]+:/.test(repo) && existsSync(repo)) {
    return { dir: path.resolve(repo), commit: await resolveIn(repo, ref, [ref]) };
  }
  // The URL is given to each fetch and never stored: it may carry a token (https://agent:<token>@…), and the cache must
  // not keep a copy of it (a clone would write it to .git/config). A cache made by an older clone loses its remote.
  if (!existsSync(path.join(dir, '.git'))) {
    mkdirSync(path.dirname(dir), { recursive: true });
    await git(['init', '--quiet', dir]);
  } else {
    await git(['-C', dir, 'config', '--remove-section', 'remote.origin']).catch(() => undefined);
  }
  await git([
    '-C',
    dir,
    'fetch',
    '--quiet',
    '--prune',
    '--force',
    repo,
    '+refs/heads/*:refs/remotes/origin/*',
    '+refs/tags/*:refs/tags/*',
  ]);
  return { dir, commit: await resolveIn(dir, ref, [`refs/remotes/origin/${ref}`, ref]) };
}

async function resolveIn(dir: string, ref: string, candidates: string[]): Promise<string> {
  for (const candidate of candidates) {
    try {
      return (await git(['-C', dir, 'rev-parse', '--verify', '--quiet', `${candidate}^{commit}`])).trim();
    } catch {
      // try the next reading of ref
    }
  }
  throw new AgentvmError('agent.unknown-ref', `The desired repository has no branch, tag or commit "${ref}".`, {
    detail: 'Check --ref (a branch of the repository, a tag or a commit).',
  });
}

function git(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      'git',
      args,
      { encoding: 'utf8', maxBuffer: 16 * 1024 * 1024, env: { ...process.env, GIT_TERMINAL_PROMPT: '0' } },
      (error, stdout, stderr) => {
        if (error) {
          const what = `git ${args
            .filter((a) => !a.startsWith('+'))
            .slice(-3)
            .join(' ')} failed: ${stderr.trim().split('\n').pop() ?? error.message}.`;
          reject(
            new AgentvmError('agent.fetch-failed', withoutUserinfo(what), {
              detail: 'Check --repo (a URL or path this host can fetch) and its credentials.',
            }),
          );
        } else resolve(stdout);
      },
    );
  });
}

export type { Plan };

/** `scheme://user:token@host/…` → `scheme://host/…` everywhere in `text`: a repository URL may carry a token. */
export function withoutUserinfo(text: string): string {
  return text.replace(/\b([a-z][a-z0-9+.-]*:\/\/)[^\s/@'"]*@/gi, '$1');
}
