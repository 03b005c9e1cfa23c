import { Flags } from '@oclif/core';
import path from 'node:path';
import { AgentvmCommand, type Outcome } from '../../cli/base-command.js';
import { hostFlags } from '../../cli/flags.js';
import { EGRESS_UNIT } from '../../egress/paths.js';
import { startEgressServer } from '../../egress/server.js';

export interface EgressServeResult {
  digest: string;
  callers: number;
}

export default class EgressServe extends AgentvmCommand<EgressServeResult> {
  static override summary =
    "Run the host's egress proxy: the only way out of every gateway unit, by domain name, audited.";
  static override description = `The forward proxy (HTTP CONNECT and plain HTTP) every profile reaches the network through. Each profile has its own unix socket under <root>/run/agentvm/egress/<unit address>/, bound into its unit; the socket a request arrives on is who is asking. Allowlists come from the contracts' spec.egress, which \`agentvm apply\` writes to <root>/var/lib/agentvm/egress/rules.json; SIGHUP (\`systemctl reload ${EGRESS_UNIT}\`) re-reads it without dropping connections. The proxy resolves names itself (host spec spec.egress.resolvers, else /etc/resolv.conf), refuses answers in loopback, private, link-local, CGNAT or ULA ranges or of this host unless listed literally, and refuses a TLS tunnel whose server name (SNI) differs from the CONNECT host. Every refusal is a 403 with a one-line reason and an audit record (\`agentvm audit tail\`), counted per destination per minute. It also bridges each profile's declared port from the host's 127.0.0.1 into the unit, for the gate and the health check. agentvm installs it as the systemd unit ${EGRESS_UNIT}; it runs until SIGTERM.`;
  static override examples = [
    {
      description: 'Serve the rules apply wrote under the default root',
      command: '<%= config.bin %> egress serve --host edge-1',
    },
  ];
  static override flags = {
    root: hostFlags.root,
    host: Flags.string({
      required: true,
      summary: 'Host name (hosts/<name>.yaml): recorded in every audit record.',
      helpValue: 'NAME',
    }),
  };

  protected async execute(): Promise<Outcome<EgressServeResult>> {
    const { flags } = await this.parse(EgressServe);
    const stopped = new Promise<void>((resolve) => {
      process.once('SIGTERM', () => resolve());
      process.once('SIGINT', () => resolve());
    });
    const warn = (m: string): void => this.say(`agentvm egress: warning: ${m}`, 'stderr');
    const server = await startEgressServer({ root: path.resolve(flags.root), host: flags.host, onWarning: warn });
    let digest = await server.reload();
    process.on(
      'SIGHUP',
      () =>
        void server
          .reload()
          .then((d) => (digest = d))
          .catch((e: unknown) => warn((e as Error).message)),
    );
    this.say(`agentvm egress: serving (${digest})`, 'stderr');
    await stopped;
    const counters = server.proxy.counters;
    await server.close();
    return {
      result: { digest, callers: 0 },
      text: `agentvm egress: stopped (${counters.allowed} allowed, ${counters.refused} refused)`,
    };
  }
}
