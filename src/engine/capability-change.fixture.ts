// The planned change the capability tests feed planCapabilities: a unit (or job) of `workload` whose config field
// `field` goes from `before` (recorded) to `after` (desired); undefined on a side means that side is absent
// (create, delete). `base` is the rest of the config on both sides (e.g. `{egress: []}`).
import type { PlannedChange } from '../model/resources.js';

export function capabilityChange(opts: {
  workload: string;
  action: PlannedChange['action'];
  field: string;
  before: unknown[] | undefined;
  after: unknown[] | undefined;
  base?: Record<string, unknown>;
  kind?: 'unit' | 'job';
}): PlannedChange {
  const { workload, action, field, before, after, base = {}, kind = 'unit' } = opts;
  const address = `${kind}.${workload}.p`;
  return {
    address,
    provider: kind === 'unit' ? 'systemd' : 'microvm',
    workload,
    action,
    effect: 'none',
    reasons: [],
    dependsOn: [],
    ...(after
      ? {
          desired: {
            address,
            provider: 'systemd',
            workload,
            identity: 'x',
            dependsOn: [],
            config: { ...base, [field]: after },
          },
        }
      : {}),
    ...(before ? { recorded: { config: { ...base, [field]: before } } } : {}),
  };
}
