// The pure decision for one gateway unit: desired (rendered) × live × locked → action, effect, reasons, drift.
// `plan` calls it with what `read` found; `apply` calls it again with a fresh read, so an apply that is resumed
// or repeated does exactly what is still missing (idempotent) and restarts only what must restart.
//
//   desired  live (agentvm's drop-in)             action   effect                reasons
//   -        present, or locked                   delete   none                  removed
//   yes      owned by another address             noop     none                  (error: unit name taken)
//   yes      missing                              create   restart               new   (replace + live-missing when locked)
//   yes      present, settings differ             update   by restart-table      source-changed (release), config-changed (keys)
//   yes      present, a second runtime source     replace  restart               live-modified (apply removes it)
//   yes      present, not running / running an    update   restart               live-modified
//            older config / release replaced /
//            a credential changed since start
//   yes      present, equal, running as written   noop     none                  -
// Drift (reported only against a lockfile entry): the drop-in gone, files that differ from what was applied, a
// second source, a unit that is not running, a process running another config, a pending daemon-reload.
// When drift is present the action is `replace` (the release provider's convention).

import { errorDiag, warningDiag, type Diagnostic } from '../../diagnostics/index.js';
import { EFFECT_SEVERITY, type Action, type Effect, type LockedResource, type Reason } from '../../model/resources.js';
import { SystemdCode } from './codes.js';
import type { RenderedGateway } from './gateway-unit.js';
import type { LiveGateway } from './live-unit.js';
import { changeEffect, keyEffect } from './restart-table.js';
import { diffUnits } from './unit-file.js';

export interface GatewayAssessment {
  action: Action;
  effect: Effect;
  reasons: Reason[];
  drift: Reason[];
  diagnostics: Diagnostic[];
  /** The unit must be (re)started: new settings that only apply at exec, or it is not running. */
  restart: boolean;
  /** Only reload-class settings changed. */
  reload: boolean;
  /** The settings (`Section.Key`) that differ between the live files and the desired ones. */
  changedKeys: string[];
}

export interface AssessInput {
  address: string;
  /** Undefined when the unit is no longer desired. */
  rendered?: RenderedGateway;
  /** Undefined when the host was not read (no provider read). */
  live?: LiveGateway;
  exists: boolean;
  liveDigest?: string;
  locked?: LockedResource;
  /** The locked config rendered with the live context, to name the settings a hand edit changed. */
  lockedRendered?: RenderedGateway;
}

const RUNNING = new Set(['active', 'reloading']);

function worse(a: Effect, b: Effect): Effect {
  return EFFECT_SEVERITY[b] > EFFECT_SEVERITY[a] ? b : a;
}

function list(items: readonly string[], max = 6): string {
  return items.length <= max ? items.join(', ') : `${items.slice(0, max).join(', ')} and ${items.length - max} more`;
}

export function assessGateway(input: AssessInput): GatewayAssessment {
  const { address, rendered, live, exists, locked } = input;
  const diagnostics: Diagnostic[] = [];
  // Findings about the live unit, independent of what is desired. Drift when a lockfile entry exists.
  const findings: Array<{ reason: Reason; effect: Effect }> = [];
  const depends: Array<{ reason: Reason; effect: Effect }> = [];

  if (locked && !exists)
    findings.push({
      reason: { code: 'live-missing', message: `${address}: agentvm's drop-in is gone from the host` },
      effect: 'restart',
    });
  if (locked && exists && input.liveDigest !== undefined && input.liveDigest !== locked.digest) {
    const keys =
      input.lockedRendered && live?.normalized
        ? diffUnits(input.lockedRendered.normalized, live.normalized).map((c) => `${c.section}.${c.key}`)
        : [];
    findings.push({
      reason: {
        code: 'live-modified',
        message: `${address}: the unit files were edited outside agentvm${keys.length ? ` (${list(keys)})` : ''}`,
      },
      effect: 'none', // the effect of undoing the edit comes from the settings diff below
    });
  }
  for (const f of live?.foreign ?? []) {
    const what =
      f.kind === 'mask' ? 'masks the unit' : f.keys.length ? `sets ${list(f.keys, 4)}` : `is a second ${f.kind}`;
    findings.push({
      reason: { code: 'live-modified', message: `${address}: second runtime source ${f.path} ${what}` },
      effect: 'restart',
    });
  }
  // The process already runs what is desired (its environment carries the desired runtime digest): rewriting
  // files then needs no restart, whatever the files on disk say.
  const processCurrent = Boolean(
    rendered &&
    live?.manager &&
    RUNNING.has(live.manager.activeState) &&
    live.running?.runtimeDigest &&
    live.running.runtimeDigest === rendered.runtimeDigest,
  );
  if (live && exists && live.manager) {
    if (live.manager.needDaemonReload)
      findings.push({
        reason: {
          code: 'live-modified',
          message: `${address}: the manager has not loaded the current unit files (daemon-reload pending)`,
        },
        effect: 'reload',
      });
    if (!RUNNING.has(live.manager.activeState)) {
      findings.push({
        reason: {
          code: 'live-modified',
          message: `${address}: the unit is ${live.manager.activeState || 'unknown'}${live.manager.subState ? ` (${live.manager.subState})` : ''}, not running`,
        },
        effect: 'restart',
      });
    } else if (live.running && live.runtimeDigest !== null && live.running.runtimeDigest !== live.runtimeDigest) {
      findings.push({
        reason: {
          code: 'live-modified',
          message: `${address}: the running process was started from another configuration than the unit files hold`,
        },
        effect: processCurrent ? 'none' : 'restart',
      });
    }
  }
  if (live && exists && live.running?.releaseCurrent === false) {
    depends.push({
      reason: {
        code: 'dependency-changed',
        message: `${address}: the release directory was replaced on disk after the process started`,
      },
      effect: 'restart',
    });
  }
  for (const c of live?.credentials ?? []) {
    if (c.state === 'changed')
      depends.push({
        reason: {
          code: 'dependency-changed',
          message: `${address}: credential \`${c.name}\` changed since the unit started`,
        },
        effect: 'restart',
      });
  }

  const drift = locked ? findings.map((f) => f.reason) : [];
  // A plan that starts, stops or restarts nothing of a running unit (nothing to do, a removal, a refusal).
  const untouched = (action: 'noop' | 'delete', reasons: Reason[] = []): GatewayAssessment => ({
    action,
    effect: 'none',
    reasons,
    drift,
    diagnostics,
    restart: false,
    reload: false,
    changedKeys: [],
  });

  if (!rendered) {
    if (!exists && !locked) return untouched('noop');
    return untouched('delete', [
      { code: 'removed', message: `${address} is no longer in the desired state: stop, disable and remove the unit` },
    ]);
  }

  if (live?.owner && live.owner !== address) {
    diagnostics.push(
      errorDiag(SystemdCode.nameTaken, `${address}: ${rendered.unit} already belongs to ${live.owner}.`, {
        address,
        detail:
          'Profile names are unit instance names and must be unique per host: rename one of the profiles, or remove the other workload first.',
      }),
    );
    return untouched('noop');
  }
  for (const c of live?.credentials ?? []) {
    if (c.state === 'missing') {
      diagnostics.push(
        warningDiag(
          SystemdCode.hostPrerequisite,
          `${address}: the source of credential \`${c.name}\` is missing on the host; the unit will not start until it exists.`,
          { address },
        ),
      );
    }
  }

  const lockedRelease = typeof locked?.attributes?.releaseId === 'string' ? locked.attributes.releaseId : undefined;
  const desiredRelease = releaseOf(rendered);
  if (!exists || !live?.normalized) {
    const reasons: Reason[] = locked
      ? drift.filter((r) => r.code === 'live-missing')
      : [{ code: 'new', message: `${address}: create ${rendered.unit} running release ${desiredRelease}` }];
    if (locked && lockedRelease && lockedRelease !== desiredRelease)
      reasons.push({ code: 'source-changed', message: `${address}: release ${lockedRelease} → ${desiredRelease}` });
    reasons.push(...findings.filter((f) => f.reason.code !== 'live-missing').map((f) => f.reason));
    return {
      action: locked ? 'replace' : 'create',
      effect: 'restart',
      reasons,
      drift,
      diagnostics,
      restart: true,
      reload: false,
      changedKeys: [],
    };
  }

  const changes = diffUnits(live.normalized, rendered.normalized);
  let { effect: settingsEffect } = changeEffect(changes);
  if (settingsEffect === 'restart' && processCurrent)
    settingsEffect = changeEffect(changes.filter((c) => keyEffect(c.section, c.key) !== 'restart')).effect;
  const reasons: Reason[] = [];
  let effect: Effect = settingsEffect;
  if (live.releaseId !== desiredRelease)
    reasons.push({
      code: 'source-changed',
      message: `${address}: release ${live.releaseId ?? 'unknown'} → ${desiredRelease}`,
    });
  const otherKeys = changes
    .filter(
      (c) =>
        !(
          live.releaseId !== desiredRelease &&
          ['Service.WorkingDirectory', 'Service.ExecStart', 'Service.BindReadOnlyPaths', 'Unit.Description'].includes(
            `${c.section}.${c.key}`,
          )
        ),
    )
    .filter((c) => !(c.section === 'Service' && c.key === 'Environment' && onlyRuntimeDigestChanged(c.before, c.after)))
    .map((c) => `${c.section}.${c.key} (${keyEffect(c.section, c.key)})`);
  if (otherKeys.length > 0) reasons.push({ code: 'config-changed', message: `${address}: ${list(otherKeys)}` });
  for (const f of [...findings, ...depends]) {
    if (f.reason.code === 'live-missing') continue;
    reasons.push(f.reason);
    effect = worse(effect, f.effect);
  }
  const changedKeys = changes.map((c) => `${c.section}.${c.key}`);
  if (reasons.length === 0)
    return { action: 'noop', effect: 'none', reasons, drift, diagnostics, restart: false, reload: false, changedKeys };
  const action: Action = drift.length > 0 ? 'replace' : 'update';
  return {
    action,
    effect,
    reasons,
    drift,
    diagnostics,
    restart: effect === 'restart' || effect === 'replace',
    reload: effect === 'reload',
    changedKeys,
  };
}

/** The release id a rendered unit runs: the last segment of its release dir. */
export function releaseOf(rendered: RenderedGateway): string {
  return rendered.releaseDir.slice(rendered.releaseDir.lastIndexOf('/') + 1);
}

/** Environment lists that differ only in RUNTIME_DIGEST_ENV (a consequence of other changes, not a change of its own). */
function onlyRuntimeDigestChanged(before: string[], after: string[]): boolean {
  const strip = (v: string[]) => v.filter((x) => !x.startsWith('AGENTVM_RUNTIME_DIGEST='));
  const b = strip(before);
  const a = strip(after);
  return b.length === a.length && b.every((x, i) => x === a[i]);
}
