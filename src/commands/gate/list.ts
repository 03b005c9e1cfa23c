import { Flags } from '@oclif/core';
import { AgentvmCommand, type Outcome } from '../../cli/base-command.js';
import { hostFlags } from '../../cli/flags.js';
import { listGrants, type ListResult } from '../../gate/access.js';

export default class GateList extends AgentvmCommand<ListResult> {
  static override summary = 'List live preview grants with their expiry (never tokens).';
  static override description =
    'Shows grants that are neither expired nor revoked: id, preview, identity, expiry, whether the one-time link was used, and the reason. Expired grants are audited (gate.expire) and pruned as a side effect.';
  static override examples = ['<%= config.bin %> gate list', '<%= config.bin %> gate list --json'];
  static override flags = {
    root: hostFlags.root,
    host: Flags.string({
      summary: 'Host name for expiry audit records. Default: the host the routes were applied for.',
      helpValue: 'NAME',
    }),
  };

  protected async execute(): Promise<Outcome<ListResult>> {
    const { flags } = await this.parse(GateList);
    const r = listGrants({ root: flags.root, ...(flags.host ? { host: flags.host } : {}) });
    if (r.grants.length === 0) return { result: r, text: 'No live grants.' };
    const now = Date.parse(r.now);
    const rows = r.grants.map((g) => {
      const left = Math.max(0, Math.round((Date.parse(g.expires) - now) / 60_000));
      return `${g.id}  ${g.preview}  ${g.identity}  expires ${g.expires} (in ${left} min)  ${g.used ? 'link used' : 'link unused'}  — ${g.reason}`;
    });
    return { result: r, text: rows.join('\n') };
  }
}
