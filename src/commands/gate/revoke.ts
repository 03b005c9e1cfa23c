import { Args, Flags } from '@oclif/core';
import { AgentvmCommand, type Outcome } from '../../cli/base-command.js';
import { hostFlags } from '../../cli/flags.js';
import { assertRevokeSelection, revokeAccess, type RevokeResult } from '../../gate/access.js';

export default class GateRevoke extends AgentvmCommand<RevokeResult> {
  static override summary =
    'Revoke grants: one by id, every grant of a preview, or all. Effective on the next request.';
  static override description =
    "A revoked grant's link and sessions are refused (403) from the very next request on: the gate checks for the revocation on every request, without a restart. Each revocation is written to the audit log. Revoking an already revoked grant changes nothing.";
  static override examples = [
    { description: 'One grant', command: '<%= config.bin %> gate revoke g-0123456789abcdef' },
    { description: 'Everyone on one preview', command: '<%= config.bin %> gate revoke --preview web/site' },
    { description: 'Everything on this host', command: '<%= config.bin %> gate revoke --all' },
  ];
  static override args = {
    id: Args.string({ required: false, description: 'Grant id (g-…), as printed by `gate grant` and `gate list`.' }),
  };
  static override flags = {
    root: hostFlags.root,
    host: Flags.string({
      summary: 'Host name for the audit records. Default: the host the routes were applied for.',
      helpValue: 'NAME',
    }),
    preview: Flags.string({ summary: 'Revoke every grant of this preview.', helpValue: 'WORKLOAD/PREVIEW' }),
    all: Flags.boolean({ summary: 'Revoke every grant on this host.' }),
  };

  protected async execute(): Promise<Outcome<RevokeResult>> {
    const { args, flags } = await this.parse(GateRevoke);
    const selection = assertRevokeSelection({
      ...(args.id !== undefined ? { id: args.id } : {}),
      ...(flags.preview !== undefined ? { preview: flags.preview } : {}),
      all: flags.all,
    });
    const r = revokeAccess({ root: flags.root, ...(flags.host ? { host: flags.host } : {}), selection });
    const lines = r.revoked.map((g) => `Revoked ${g.id}: ${g.preview} for ${g.identity}.`);
    if (r.alreadyRevoked.length) lines.push(`Already revoked: ${r.alreadyRevoked.join(', ')}.`);
    if (lines.length === 0) lines.push('No grants matched: nothing to revoke.');
    return { result: r, text: lines.join('\n') };
  }
}
