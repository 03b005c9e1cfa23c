import { Args, Flags } from '@oclif/core';
import { AgentvmCommand, type Outcome } from '../../cli/base-command.js';
import { hostFlags } from '../../cli/flags.js';
import { grantAccess, type GrantResult } from '../../gate/access.js';

export default class GateGrant extends AgentvmCommand<GrantResult> {
  static override summary = 'Grant one person time-limited access to a preview; prints a one-time link.';
  static override description = `The preview must be applied (declared in the workload manifest's spec.previews and applied), and the identity must be one of its grantees. --ttl is capped by the preview's maxTtl. The link points at the preview's own origin (<preview>--<workload>--<tag>.localhost by default) and carries a 256-bit one-time token: it opens a page, and only that page's button (a same-origin POST) exchanges the token for a session cookie of that origin alone (HttpOnly, SameSite=Strict; __Host- and Secure over TLS), so chat unfurlers and mail scanners that fetch the link do not spend it; a second exchange is refused. Only the token's hash is stored, and the link is printed only here — send it to the person over a private channel. The grant is written to the audit log.`;
  static override examples = [
    {
      description: 'Half an hour of access for a review',
      command:
        '<%= config.bin %> gate grant web/site --to ana@example.com --ttl 30m --reason "review of the onboarding page"',
    },
    {
      description: 'Machine-readable (the link is in .link)',
      command: '<%= config.bin %> gate grant web/site --to ana@example.com --ttl 2h --reason "QA" --json',
    },
  ];
  static override args = {
    preview: Args.string({ required: true, description: '<workload>/<preview>, as declared in the manifest.' }),
  };
  static override flags = {
    root: hostFlags.root,
    host: Flags.string({
      summary: 'Host name for the audit record. Default: the host the routes were applied for.',
      helpValue: 'NAME',
    }),
    to: Flags.string({
      required: true,
      summary: "Identity (email) to grant; must be among the preview's grantees.",
      helpValue: 'EMAIL',
    }),
    ttl: Flags.string({
      required: true,
      summary: "How long the grant lasts, e.g. 30m, 2h (at most the preview's maxTtl).",
      helpValue: 'DURATION',
    }),
    reason: Flags.string({
      required: true,
      summary: 'Why access is needed (recorded in the audit log).',
      helpValue: 'TEXT',
    }),
  };

  protected async execute(): Promise<Outcome<GrantResult>> {
    const { args, flags } = await this.parse(GateGrant);
    const r = grantAccess({
      root: flags.root,
      ...(flags.host ? { host: flags.host } : {}),
      target: args.preview,
      identity: flags.to,
      ttl: flags.ttl,
      reason: flags.reason,
    });
    const lines = [
      `Granted ${r.grant.preview} to ${r.grant.identity} until ${r.grant.expires} (grant ${r.grant.id}).`,
      'One-time link (send it privately; it works once):',
      `  ${r.link}`,
      `Revoke with: agentvm gate revoke ${r.grant.id}`,
    ];
    if (!r.listener.recorded)
      lines.push(
        `Note: no running gate has recorded its address on this root; the link assumes ${r.listener.address}:${r.listener.port}.`,
      );
    return { result: r, text: lines.join('\n') };
  }
}
