// Which unit settings need what when they change (NixOS switch-to-configuration style): an explicit table, so the
// plan can say per unit whether a change restarts the workload, reloads it, or touches nothing that runs.
//   none     the manager re-reads its files (daemon-reload); the running process is not touched.
//   reload   the manager applies the setting to the running unit in place (daemon-reload), and a unit with
//            ExecReload= is also reloaded (`systemctl reload`, SIGHUP for the gateways); MainPID is kept.
//   restart  the setting is read only when the process is executed (argv, environment, sandbox, credentials):
//            the unit must be restarted to run with it.
// Invariant: a setting missing from the table is `restart`. An unknown setting never goes unapplied.

import type { Effect } from '../../model/resources.js';
import type { KeyChange } from './unit-file.js';

/** Settings whose change touches nothing that runs. `X-*` keys and the whole [Install] section are `none` too. */
const NONE = new Set(['Unit.Description', 'Unit.Documentation']);

/** Settings the manager applies to a running unit without a new process. */
const RELOAD = new Set([
  // The commands used for the next reload or stop, and restart/timeout policy: read when they are used.
  'Service.ExecReload',
  'Service.ExecStop',
  'Service.ExecStopPost',
  'Service.Restart',
  'Service.RestartSec',
  'Service.TimeoutStartSec',
  'Service.TimeoutStopSec',
  'Service.TimeoutSec',
  'Service.KillMode',
  'Unit.StartLimitIntervalSec',
  'Unit.StartLimitBurst',
  // Resource control lives in the unit's cgroup, which the manager re-realises on daemon-reload.
  'Service.MemoryMax',
  'Service.MemoryHigh',
  'Service.TasksMax',
  'Service.CPUQuota',
  'Service.CPUWeight',
  'Service.IPAddressAllow',
  'Service.IPAddressDeny',
]);

/** The effect of changing one setting. */
export function keyEffect(section: string, key: string): Effect {
  if (key.startsWith('X-') || section === 'Install') return 'none';
  const id = `${section}.${key}`;
  if (NONE.has(id)) return 'none';
  if (RELOAD.has(id)) return 'reload';
  return 'restart';
}

/** The worst effect of a set of changed settings, with the settings that cause it. */
export function changeEffect(changes: readonly KeyChange[]): { effect: Effect; causes: string[] } {
  let effect: Effect = 'none';
  const byEffect: Record<Effect, string[]> = { none: [], reload: [], restart: [], replace: [] };
  for (const c of changes) {
    const e = keyEffect(c.section, c.key);
    byEffect[e].push(`${c.section}.${c.key}`);
    if (e === 'restart' || (e === 'reload' && effect === 'none')) effect = e;
  }
  return { effect, causes: byEffect[effect] };
}

/** The table as data, for documentation and tests. */
export const RESTART_TABLE = {
  none: [...NONE, 'X-*', 'Install.*'],
  reload: [...RELOAD],
  restart: ['everything else'],
} as const;
