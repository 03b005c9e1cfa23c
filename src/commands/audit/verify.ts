import { AgentvmCommand, type Outcome } from '../../cli/base-command.js';
import { hostFlags, stateFlags } from '../../cli/flags.js';
import { chooseStateBackend } from '../../app/state-backend.js';
import { verifyAudit, type AuditVerifyResult } from '../../app/state-info.js';
import { ExitCode } from '../../diagnostics/index.js';
import { renderDiagnostics } from '../../ui/diagnostics-text.js';
import { styleFor } from '../../ui/style.js';

export default class AuditVerify extends AgentvmCommand<AuditVerifyResult> {
  static override summary =
    'Verify the audit log hash chain: detects edited, deleted, reordered and truncated records.';
  static override description =
    'Each record carries the hash of the one before it; each lockfile records the head it last wrote, so cutting records off the end is caught too.\n\nExit codes: 0 intact, 1 tampered or unreadable.';
  static override flags = { root: hostFlags.root, ...stateFlags };
  static override examples = ['<%= config.bin %> audit verify --root /tmp/agentvm-demo'];

  protected async execute(): Promise<Outcome<AuditVerifyResult>> {
    const { flags } = await this.parse(AuditVerify);
    await chooseStateBackend(flags);
    const result = await verifyAudit(flags.root);
    const style = styleFor(process.stdout);
    const text = result.ok
      ? style.green(`✓ Audit log intact: ${result.records} record(s) in ${result.file}.`)
      : `${renderDiagnostics(result.diagnostics, style)}\n\n${style.red(`✗ Audit log ${result.file} fails verification.`)}`;
    return { result, text, exitCode: result.ok ? ExitCode.Ok : ExitCode.Error };
  }
}
