// The ink view of a plan for an interactive terminal: policy findings first (they decide whether anything can be
// applied), then drift, then the changes grouped host → workload with action symbols, effects and reasons, then the
// one-line summary. It renders the same Plan model and the same summary line as the plain-text view (plan-text.ts).

import { Box, Text } from 'ink';
import type { Diagnostic } from '../../diagnostics/index.js';
import type { Plan } from '../../engine/plan.js';
import type { Action, PlannedChange } from '../../model/resources.js';
import { ACTION_SYMBOL, groupByWorkload, short, summaryLine } from '../plan-text.js';
import { describeSource } from '../validate-text.js';

export const ACTION_COLOUR: Record<Action, string> = { create: 'green', update: 'yellow', replace: 'magenta', delete: 'red', noop: 'gray' };

export function DiagnosticView({ d }: { d: Diagnostic }) {
  const where = [d.location ? `${d.location.file}:${d.location.line}:${d.location.column}` : undefined, d.path, d.address].filter(Boolean).join('  ');
  return (
    <Box flexDirection="column" marginLeft={2}>
      <Text>
        <Text color={d.severity === 'error' ? 'red' : 'yellow'} bold>
          {d.severity === 'error' ? '✗ error' : '! warning'}
        </Text>
        <Text dimColor>[{d.code}]</Text>: {d.summary}
      </Text>
      {where ? (
        <Box marginLeft={4}>
          <Text>
            <Text color="cyan">--&gt;</Text> {where}
          </Text>
        </Box>
      ) : null}
      {d.detail ? (
        <Box marginLeft={4}>
          <Text>
            <Text dimColor>fix:</Text> {d.detail}
          </Text>
        </Box>
      ) : null}
    </Box>
  );
}

function ChangeRow({ c }: { c: PlannedChange }) {
  const colour = ACTION_COLOUR[c.action];
  const identityChanged = (c.before?.identity || c.after?.identity) && c.before?.identity !== c.after?.identity;
  return (
    <Box flexDirection="column" marginLeft={4}>
      <Text>
        <Text color={colour} bold>
          {ACTION_SYMBOL[c.action].padStart(3)}
        </Text>{' '}
        {c.address}
        {'  '}
        <Text color={colour}>{c.action}</Text>
        {c.effect !== 'none' ? <Text dimColor>{`  effect: ${c.effect}`}</Text> : null}
      </Text>
      <Box flexDirection="column" marginLeft={6}>
        {identityChanged ? (
          <Text dimColor wrap="truncate-end">
            {`${short(c.before?.identity)} → ${short(c.after?.identity)}`}
          </Text>
        ) : null}
        {c.reasons.map((r, i) => (
          <Text key={i}>
            <Text dimColor>{r.code}:</Text> {r.message}
          </Text>
        ))}
      </Box>
    </Box>
  );
}

function counts(changes: readonly PlannedChange[]): string {
  const n = new Map<Action, number>();
  for (const c of changes) n.set(c.action, (n.get(c.action) ?? 0) + 1);
  return [...n.entries()].map(([a, k]) => `${k} ${a}`).join(', ');
}

export function PlanView({ plan }: { plan: Plan }) {
  const title = plan.mode === 'refresh-only' ? 'Drift check' : plan.mode === 'rollback' ? 'Rollback plan' : 'Plan';
  const errors = plan.diagnostics.filter((d) => d.severity === 'error');
  const warnings = plan.diagnostics.filter((d) => d.severity !== 'error');
  const changes = plan.changes.filter((c) => c.action !== 'noop');
  const s = plan.summary;
  const changeCount = s.create + s.update + s.replace + s.delete;
  return (
    <Box flexDirection="column">
      <Text>
        <Text bold>
          {title} for host {plan.host}
        </Text>
        {` — ${plan.source.repo} at ${describeSource(plan.source)}`}
      </Text>
      <Text dimColor>
        {`Lockfile: ${plan.lock.lineage ? `lineage ${plan.lock.lineage}, serial ${plan.lock.serial}` : 'none yet (first apply)'}; live state ${short(plan.liveFingerprint)}; plan ${plan.id.slice(7, 19)}`}
      </Text>

      {plan.diagnostics.length ? (
        <Box flexDirection="column" marginTop={1}>
          <Text bold color={errors.length ? 'red' : 'yellow'}>
            Policy and validation: {errors.length} error(s), {warnings.length} warning(s)
          </Text>
          {[...errors, ...warnings].map((d, i) => (
            <DiagnosticView key={i} d={d} />
          ))}
        </Box>
      ) : null}

      {plan.drift.length ? (
        <Box flexDirection="column" marginTop={1}>
          <Text bold color="yellow">
            Drift — changed outside agentvm:
          </Text>
          {plan.drift.map((d) => (
            <Box key={d.address} flexDirection="column" marginLeft={2}>
              <Text>
                <Text color="yellow" bold>
                  !
                </Text>{' '}
                {d.address}
              </Text>
              <Box flexDirection="column" marginLeft={4}>
                {d.reasons.map((r, i) => (
                  <Text key={i}>
                    <Text dimColor>{r.code}:</Text> {r.message}
                  </Text>
                ))}
                {d.locked || d.live ? <Text dimColor>{`locked ${short(d.locked?.digest)} → live ${d.live?.exists ? short(d.live.digest) : 'missing'}`}</Text> : null}
              </Box>
            </Box>
          ))}
        </Box>
      ) : null}

      {changes.length ? (
        <Box flexDirection="column" marginTop={1}>
          <Text bold>
            Host {plan.host} <Text dimColor>({changes.length} change(s))</Text>
          </Text>
          {[...groupByWorkload(changes)].map(([workload, list]) => (
            <Box key={workload} flexDirection="column" marginTop={1} marginLeft={2}>
              <Text>
                <Text bold color="cyan">
                  Workload {workload}
                </Text>
                <Text dimColor>{`  ${counts(list)}`}</Text>
              </Text>
              {list.map((c) => (
                <ChangeRow key={c.address} c={c} />
              ))}
            </Box>
          ))}
        </Box>
      ) : null}

      <Box marginTop={1}>
        <Text bold color={errors.length ? 'red' : changeCount || s.drift ? 'yellow' : 'green'}>
          {summaryLine(plan)}
        </Text>
      </Box>
      {plan.source.uncommitted ? (
        <Text color="yellow">This plan reads uncommitted files (WORKTREE): it is for review only and cannot be applied. Commit, then plan again.</Text>
      ) : !plan.applicable && plan.mode !== 'refresh-only' ? (
        <Text color="red">This plan has errors and cannot be applied. Fix them and plan again.</Text>
      ) : null}
    </Box>
  );
}
