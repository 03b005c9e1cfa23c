import { Flags } from '@oclif/core';
import { AgentvmCommand, type Outcome } from '../../cli/base-command.js';
import { stateFlags } from '../../cli/flags.js';
import { migrateState, postgresSelection, type MigrateResult } from '../../app/state-remote.js';
import { ExitCode } from '../../diagnostics/index.js';

export default class StateMigrate extends AgentvmCommand<MigrateResult> {
  static override summary = 'Create or upgrade the PostgreSQL state schema (versioned migrations, applied in order).';
  static override description =
    'Run once per database before the first use, and after upgrading agentvm. Safe to run again and from several hosts at once: each migration is applied once, in its own transaction. Other commands refuse a database at another schema version. --check only reports the version (exit 1 when a migration is due).';
  static override flags = {
    'state-url': stateFlags['state-url'],
    check: Flags.boolean({ summary: "Only report the schema version; exit 1 when it is not this agentvm's." }),
  };
  static override examples = [
    'AGENTVM_PG_URL=postgresql://agentvm@db/agentvm <%= config.bin %> state migrate',
    '<%= config.bin %> state migrate --check --state-url env:FLEET_PG_URL',
  ];

  protected async execute(): Promise<Outcome<MigrateResult>> {
    const { flags } = await this.parse(StateMigrate);
    const r = await migrateState(postgresSelection(flags), flags.check);
    const text = flags.check
      ? `${r.backend}: schema version ${r.from}${r.current ? ' (current)' : `; this agentvm needs ${r.latest}: run \`agentvm state migrate\``}.`
      : r.applied.length
        ? `${r.backend}: migrated from version ${r.from} to ${r.to}:\n${r.applied.map((m) => `  ${m.version}  ${m.name}`).join('\n')}`
        : `${r.backend}: schema already at version ${r.to}; nothing to do.`;
    return { result: r, text, exitCode: r.current ? ExitCode.Ok : ExitCode.Error };
  }
}
