// Issue 21, item 7: a saved plan is bound to its commit, and may be signed where it is made. Every field of every change of every kind (create, update,
// delete, noop — made by real plans of the example fleet) is edited in turn: the binding check names the edited
// change's address each time. End to end, the attack (a unit's entrypoint changed in the JSON) and an edit
// that drops the plan's error diagnostics are refused by `agentvm apply` before anything is applied.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { agentvm, assertBuilt, hasStackTrace, ROOT } from './support/cli.js';
import { fleetCopy, type FleetCopy } from './support/fleet.js';
import { makePlan } from '../src/app/plan.js';
import { firstPlanDifference } from '../src/app/plan-binding.js';
import type { Plan } from '../src/engine/plan.js';

let fleet: FleetCopy;

/** Every leaf path of a JSON value, e.g. ['desired', 'config', 'entrypoint', 0]. */
function leaves(value: unknown, at: Array<string | number> = []): Array<Array<string | number>> {
  if (Array.isArray(value)) return value.length ? value.flatMap((v, i) => leaves(v, [...at, i])) : [at];
  if (value && typeof value === 'object') {
    const keys = Object.keys(value);
    return keys.length ? keys.flatMap((k) => leaves((value as Record<string, unknown>)[k], [...at, k])) : [at];
  }
  return [at];
}

/** The plan as a plan file holds it: JSON, so no two changes share an object (structuredClone would keep sharing). */
function asFile(plan: Plan): Plan {
  return JSON.parse(JSON.stringify(plan)) as Plan;
}

/** A copy of `plan` with the leaf at `leaf` of change `i` changed (a string gets a suffix, a number +1, …). */
function edited(plan: Plan, i: number, leaf: Array<string | number>): Plan {
  const copy = asFile(plan);
  let parent: Record<string | number, unknown> = copy.changes[i] as unknown as Record<string, unknown>;
  for (const k of leaf.slice(0, -1)) parent = parent[k] as Record<string | number, unknown>;
  const key = leaf[leaf.length - 1];
  if (key === undefined) throw new Error('empty path');
  const v = parent[key];
  parent[key] =
    typeof v === 'string'
      ? `${v}x`
      : typeof v === 'number'
        ? v + 1
        : typeof v === 'boolean'
          ? !v
          : v === null
            ? 'x'
            : Array.isArray(v)
              ? ['x']
              : { x: 1 };
  return copy;
}

describe('a saved plan is bound to its commit', () => {
  beforeAll(() => {
    assertBuilt();
    fleet = fleetCopy();
  });
  afterAll(() => fleet?.cleanup());

  it('GIVEN any field of any change edited (create, update, delete, noop) THEN the first difference names that change', async () => {
    const plans: Plan[] = [];
    const opts = { repo: fleet.repo, ref: 'HEAD', host: 'edge-1', root: fleet.root };
    plans.push((await makePlan(opts)).plan);
    const first = await agentvm([
      'apply',
      '--repo',
      fleet.repo,
      '--host',
      'edge-1',
      '--root',
      fleet.root,
      '--auto-approve',
    ]);
    expect(first.code, first.stderr).toBe(0);
    // An update (a unit's env) and deletes (a workload leaves the host) against the applied state.
    const manifest = path.join(fleet.repo, 'workloads/agent-pool/manifest.yaml');
    writeFileSync(manifest, readFileSync(manifest, 'utf8').replace(/AGENT_POOL_SIZE: "2"/, 'AGENT_POOL_SIZE: "7"'));
    const host = path.join(fleet.repo, 'hosts/edge-1.yaml');
    writeFileSync(host, readFileSync(host, 'utf8').replace(/\n\s+- transcript-summarizer/, ''));
    fleet.git('commit', '-q', '-am', 'update and delete');
    plans.push((await makePlan(opts)).plan);

    const kinds = new Set<string>();
    let edits = 0;
    for (const plan of plans) {
      expect(firstPlanDifference(asFile(plan), plan)).toBeNull();
      plan.changes.forEach((change, i) => {
        kinds.add(change.action);
        for (const leaf of leaves(change)) {
          const diff = firstPlanDifference(edited(plan, i, leaf), plan);
          expect(diff, `${change.address} ${leaf.join('.')}`).not.toBeNull();
          expect(diff!.address, `${change.address} ${leaf.join('.')}: ${diff!.where}`).toBe(change.address);
          edits++;
        }
      });
      // Edits outside the changes: dropping a diagnostic, the summary, the live fingerprint, an extra field.
      const noDiagnostics = { ...asFile(plan), diagnostics: [] };
      if (plan.diagnostics.length) expect(firstPlanDifference(noDiagnostics, plan)?.where).toMatch(/^\.diagnostics/);
      expect(
        firstPlanDifference({ ...asFile(plan), summary: { ...plan.summary, delete: 0, create: 99 } }, plan)?.where,
      ).toMatch(/^\.summary/);
      expect(firstPlanDifference({ ...asFile(plan), liveFingerprint: 'x' }, plan)?.where).toBe('.liveFingerprint');
      expect(firstPlanDifference({ ...asFile(plan), extra: 1 } as Plan, plan)?.where).toBe('.extra');
      // What may differ: when it was made, its (recomputed) id, and the ref's name.
      expect(
        firstPlanDifference(
          {
            ...asFile(plan),
            createdAt: '2000-01-01T00:00:00.000Z',
            id: 'f'.repeat(12),
            source: { ...plan.source, ref: 'main' },
          },
          plan,
        ),
      ).toBeNull();
    }
    for (const kind of ['create', 'update', 'delete', 'noop']) expect([...kinds]).toContain(kind);
    expect(edits).toBeGreaterThan(200);
  }, 300_000);

  it("GIVEN the issue's attack (a unit's entrypoint edited in the plan file) THEN apply refuses it naming the address, and nothing is applied", async () => {
    const root = path.join(fleet.base, 'root-attack');
    const out = path.join(fleet.base, 'attack.plan.json');
    const plan = await agentvm(['plan', '--repo', fleet.repo, '--host', 'edge-1', '--root', root, '--out', out]);
    expect(plan.code, plan.stderr).toBe(0);
    const saved = JSON.parse(readFileSync(out, 'utf8')) as Plan;
    const unit = saved.changes.find((c) => c.address.startsWith('unit.') && c.desired?.config.entrypoint);
    expect(unit).toBeDefined();
    unit!.desired!.config.entrypoint = ['sh', '-c', 'id > /tmp/pwned'];
    writeFileSync(out, JSON.stringify(saved, null, 2));
    const apply = await agentvm(['apply', out, '--root', root]);
    expect(hasStackTrace(apply.stdout + apply.stderr)).toBe(false);
    expect(apply.code).toBe(1);
    expect(apply.stderr).toContain('apply.plan-mismatch');
    expect(apply.stderr).toContain(unit!.address);
    expect(existsSync(path.join(root, 'var/lib/agentvm/state/edge-1.lock.json'))).toBe(false);
    expect(existsSync(path.join(root, 'etc'))).toBe(false);
  }, 120_000);

  it('GIVEN --require-signed-plan THEN a plan signed by the pipeline key applies; unsigned, edited-after-signing and re-signed plans are refused', async () => {
    const root = path.join(fleet.base, 'root-signed');
    const keys = path.join(fleet.base, 'keys');
    for (const who of ['pipeline', 'attacker']) {
      const made = spawnSync(
        process.execPath,
        [path.join(ROOT, 'scripts/sign-local.js'), 'keygen', path.join(keys, who)],
        { encoding: 'utf8' },
      );
      expect(made.status, made.stderr).toBe(0);
    }
    const pipelineKey = path.join(keys, 'pipeline/signing.key.pem');
    const pipelinePub = path.join(keys, 'pipeline/signing.pub.pem');
    const planArgs = ['plan', '--repo', fleet.repo, '--host', 'edge-1', '--root', root];
    const require = ['--root', root, '--require-signed-plan', '--plan-key', pipelinePub];
    const refusedWith = async (file: string, code: string) => {
      const r = await agentvm(['apply', file, ...require]);
      expect(hasStackTrace(r.stdout + r.stderr)).toBe(false);
      expect(r.code, r.stdout + r.stderr).toBe(1);
      expect(r.stderr).toContain(code);
      expect(existsSync(path.join(root, 'var/lib/agentvm/state/edge-1.lock.json'))).toBe(false);
    };

    const unsigned = path.join(fleet.base, 'unsigned.plan.json');
    expect((await agentvm([...planArgs, '--out', unsigned])).code).toBe(0);
    await refusedWith(unsigned, 'apply.plan-unsigned');

    const signed = path.join(fleet.base, 'signed.plan.json');
    const made = await agentvm([...planArgs, '--out', signed, '--sign', pipelineKey]);
    expect(made.code, made.stderr).toBe(0);
    expect(made.stdout).toContain(`${signed}.sigstore.json`);
    expect(readFileSync(`${signed}.sigstore.json`, 'utf8')).not.toContain('PRIVATE KEY');

    // Edited after signing (one byte of whitespace: the content is the same plan, the bytes are not).
    const edited = path.join(fleet.base, 'edited.plan.json');
    writeFileSync(edited, `${readFileSync(signed, 'utf8')} `);
    copyFileSync(`${signed}.sigstore.json`, `${edited}.sigstore.json`);
    await refusedWith(edited, 'apply.plan-signature');

    // Re-signed by another key (an attacker who edited the plan and signed it with their own key).
    const resigned = path.join(fleet.base, 'resigned.plan.json');
    copyFileSync(signed, resigned);
    const bundle = spawnSync(
      process.execPath,
      [
        path.join(ROOT, 'scripts/sign-local.js'),
        'sign',
        '--key',
        path.join(keys, 'attacker/signing.key.pem'),
        resigned,
      ],
      { encoding: 'utf8' },
    );
    expect(bundle.status, bundle.stderr).toBe(0);
    writeFileSync(`${resigned}.sigstore.json`, bundle.stdout);
    await refusedWith(resigned, 'apply.plan-signature');

    const auto = await agentvm(['apply', '--repo', fleet.repo, '--host', 'edge-1', '--auto-approve', ...require]);
    expect(auto.code).toBe(1);
    expect(auto.stderr).toContain('apply.plan-unsigned');

    const ok = await agentvm(['apply', signed, ...require]);
    expect(ok.code, ok.stdout + ok.stderr).toBe(0);
    expect(existsSync(path.join(root, 'var/lib/agentvm/state/edge-1.lock.json'))).toBe(true);
  }, 180_000);
});
