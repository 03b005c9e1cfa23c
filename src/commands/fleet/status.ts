import { AgentvmCommand, type Outcome } from '../../cli/base-command.js';
import { hostFlags, stateFlags } from '../../cli/flags.js';
import { fleetStatus, type FleetStatusResult } from '../../app/fleet-status.js';
import { chooseStateBackend } from '../../app/state-backend.js';

export default class FleetStatus extends AgentvmCommand<FleetStatusResult> {
  static override summary =
    'Every host of the fleet: applied commit, target, status and why, health, drift, last seen, lease holder.';
  static override description =
    "Reads what each host's `agentvm agent` last published to the PostgreSQL state backend, in one query. A rollout that stopped shows on the hosts it holds back (status waiting, with the wave, host and reason that stopped it) and on the host that failed.";
  static override flags = { root: hostFlags.root, ...stateFlags };
  static override examples = [
    '<%= config.bin %> fleet status --state-backend postgres',
    "<%= config.bin %> fleet status --json | jq '.hosts[] | select(.healthy == false)'",
  ];

  protected async execute(): Promise<Outcome<FleetStatusResult>> {
    const { flags } = await this.parse(FleetStatus);
    await chooseStateBackend({
      'state-backend': flags['state-backend'] ?? 'postgres',
      'state-url': flags['state-url'],
    });
    const r = await fleetStatus(flags.root);
    const lines = r.hosts.map((h) =>
      [
        h.host,
        `applied ${h.commit?.slice(0, 12) ?? '-'}`,
        `target ${h.target?.slice(0, 12) ?? '-'}`,
        h.status ?? 'never published',
        h.healthy === null
          ? 'health ?'
          : h.healthy
            ? 'healthy'
            : `UNHEALTHY${h.failingUnits.length ? ` (${h.failingUnits.join(', ')})` : ''}`,
        `drift ${h.drift}`,
        h.ageSeconds === null ? 'never seen' : `seen ${h.ageSeconds}s ago`,
        h.lease
          ? `locked by ${h.lease.who} (${h.lease.operation}, pid ${h.lease.pid})${h.lease.expired ? ' EXPIRED' : ''}`
          : 'unlocked',
        ...(h.reason ? [`— ${h.reason}`] : []),
      ].join('\t'),
    );
    return { result: r, text: lines.length ? lines.join('\n') : `No host has state in ${r.backend}.` };
  }
}
