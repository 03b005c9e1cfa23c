import { Flags } from '@oclif/core';
import path from 'node:path';
import { AgentvmCommand, type Outcome } from '../../cli/base-command.js';
import { hostFlags } from '../../cli/flags.js';
import { AgentvmError, userError } from '../../diagnostics/index.js';
import { GateCode } from '../../gate/codes.js';
import {
  assertListenable,
  assertPublicUrl,
  DEFAULT_GATE_ADDRESS,
  DEFAULT_GATE_PORT,
  isGateDomain,
  isLoopback,
  readTlsReference,
} from '../../gate/listener.js';
import { isLocalhostDomain } from '../../gate/host-names.js';
import { startGateServer } from '../../gate/server.js';
import { gatePaths } from '../../gate/paths.js';
import { readRouteTable, readServerSettings } from '../../gate/routes.js';
import { GATE_UNIT, renderGateUnit } from '../../gate/unit.js';
import type { GateServeResult as GateServeResultDocument } from '../../generated/gate-serve-result.js';

/** The --json result; its type is generated from the schema (schemas/ are the source of truth). */
export type GateServeResult = GateServeResultDocument;

export default class GateServe extends AgentvmCommand<GateServeResult> {
  static override summary = 'Run the preview gate: the only way in to previews, by grant, audited.';
  static override description = `An HTTP(S) reverse proxy in front of previews that listen on loopback ports or unix sockets. Each applied preview (a manifest's spec.previews, written to <root>/var/lib/agentvm/gate/routes.json by \`agentvm apply\`) is its own origin, http(s)://<preview>--<workload>.<domain>[:port]/ (behind a proxy: spec.gate.domain with a wildcard name and certificate; default domain localhost, which browsers resolve to loopback without DNS, where names carry a secret tag, <preview>--<workload>--<tag>.localhost, so no page can address another preview's host on an agent's port), and nowhere else, by people who followed a one-time link from \`agentvm gate grant\` (the link opens a page; only its button, a same-origin POST, spends the link, so link scanners cannot). --routing path (host spec spec.gate.routing: path) serves every preview under /p/<workload>/<preview>/ on one origin instead: only where previews trust each other. Every forwarded request carries X-Agentvm-Identity, a JWT (EdDSA) naming the grantee, grant and preview, verifiable with <root>/var/lib/agentvm/gate/identity-key.pub.pem. Route changes, new grants and revocations take effect on the next request, without a restart. WebSocket upgrades (a dev server's live reload) are tunnelled after the same checks, and a revocation cuts the tunnel before its next message. Every grant exchange, allowed and denied request is written to the audit log (never a token).

Where it listens comes from the host spec's spec.gate, which \`agentvm apply\` writes to <root>/var/lib/agentvm/gate/server.json; --address, --port and --tls-cert/--tls-key override it (defaults without either: 127.0.0.1:8443). Without TLS the gate listens on loopback only and says so; a non-loopback address without TLS is refused. Behind a TLS-terminating proxy, --public-url (host spec spec.gate.publicUrl) names the origin people use: grant links point there, session cookies are Secure when it is https, and WebSocket handshakes from that origin pass the same-origin check. agentvm installs and reconciles it as the systemd unit ${GATE_UNIT} on hosts with previews; --print-unit prints such a unit instead of serving. It runs until SIGTERM or Ctrl-C, then flushes the audit log.`;
  static override examples = [
    {
      description: 'Serve where the host spec says (server.json written by apply; default 127.0.0.1:8443)',
      command: '<%= config.bin %> gate serve --host edge-1',
    },
    {
      description: 'Serve HTTPS on all interfaces',
      command:
        '<%= config.bin %> gate serve --host edge-1 --address 0.0.0.0 --tls-cert file:/etc/agentvm/gate.crt --tls-key file:/etc/agentvm/gate.key',
    },
    {
      description: 'Serve on loopback behind a TLS-terminating proxy at https://previews.example.com',
      command: '<%= config.bin %> gate serve --host edge-1 --public-url https://previews.example.com',
    },
    {
      description: 'Print the systemd unit that runs it',
      command: '<%= config.bin %> gate serve --host edge-1 --print-unit > /etc/systemd/system/agentvm-gate.service',
    },
  ];
  static override flags = {
    root: hostFlags.root,
    host: Flags.string({
      required: true,
      summary: 'Host name (hosts/<name>.yaml): recorded in every audit record.',
      helpValue: 'NAME',
    }),
    address: Flags.string({
      summary: `Listen address; overrides server.json (host spec spec.gate.address, default ${DEFAULT_GATE_ADDRESS}). Loopback unless TLS is given.`,
      helpValue: 'IP',
    }),
    port: Flags.integer({
      summary: `Listen port; overrides server.json (host spec spec.gate.port, default ${DEFAULT_GATE_PORT}); 0 picks a free one.`,
      min: 0,
      max: 65535,
    }),
    'public-url': Flags.string({
      summary:
        'The origin people reach the gate at through a TLS-terminating proxy (e.g. https://previews.example.com); overrides server.json (host spec spec.gate.publicUrl).',
      helpValue: 'URL',
    }),
    routing: Flags.string({
      summary:
        'How previews are named: host (own origin per preview, the default) or path (/p/<workload>/<preview>/, one shared origin); overrides server.json (host spec spec.gate.routing).',
      options: ['host', 'path'],
    }),
    domain: Flags.string({
      summary:
        "Gate domain under host routing: previews are <preview>--<workload>.<domain>; overrides server.json (host spec spec.gate.domain). Default: the public URL's host, else localhost.",
      helpValue: 'DOMAIN',
    }),
    'tls-cert': Flags.string({
      summary: 'TLS certificate by reference: file:/abs/path or systemd-creds:<name>.',
      dependsOn: ['tls-key'],
      helpValue: 'REF',
    }),
    'tls-key': Flags.string({
      summary: 'TLS private key by reference: file:/abs/path or systemd-creds:<name>.',
      dependsOn: ['tls-cert'],
      helpValue: 'REF',
    }),
    'print-unit': Flags.boolean({ summary: `Print the ${GATE_UNIT} systemd unit for these flags and exit.` }),
    scope: Flags.string({
      summary: 'With --print-unit: system or user unit (hardening differs).',
      options: ['system', 'user'],
      default: 'system',
    }),
  };

  protected async execute(): Promise<Outcome<GateServeResult>> {
    const { flags } = await this.parse(GateServe);
    const root = path.resolve(flags.root);
    // Flags override what apply wrote (server.json); without either, the host spec's defaults.
    const applied = readServerSettings(gatePaths(root).server);
    // A root belongs to one host: serving its routes under another host name would file every audit record wrongly.
    const appliedFor = applied?.host ?? readRouteTable(gatePaths(root).routes).host;
    if (appliedFor && appliedFor !== flags.host) {
      throw userError(
        'gate.host-mismatch',
        `The gate state under ${root} was applied for host \`${appliedFor}\`, not \`${flags.host}\`.`,
        `Pass --host ${appliedFor}, or give the --root of host ${flags.host}.`,
      );
    }
    const address = flags.address ?? applied?.address ?? DEFAULT_GATE_ADDRESS;
    const port = flags.port ?? applied?.port ?? DEFAULT_GATE_PORT;
    const tlsRefs =
      flags['tls-cert'] && flags['tls-key']
        ? { cert: flags['tls-cert'], key: flags['tls-key'] }
        : (applied?.tls ?? undefined);
    assertListenable(address, tlsRefs !== undefined);
    const publicUrl =
      flags['public-url'] !== undefined
        ? assertPublicUrl(flags['public-url'], '--public-url')
        : (applied?.publicUrl ?? undefined);
    const routing = (flags.routing ?? applied?.routing ?? 'host') as 'host' | 'path';
    const domain = flags.domain ?? applied?.domain ?? undefined;
    if (domain !== undefined && !isGateDomain(domain))
      throw userError(
        GateCode.invalidConfig,
        `--domain ${JSON.stringify(domain)} is not a lowercase DNS name.`,
        'Give the name previews live under, e.g. previews.example.com (previews are then <preview>--<workload>.previews.example.com), or localhost.',
      );
    if (flags['print-unit']) {
      const rendered = renderGateUnit({
        node: process.execPath,
        bin: path.resolve(this.config.root, 'bin', 'run.js'),
        root,
        host: flags.host,
        listen: {
          address,
          port,
          ...(tlsRefs ? { tls: tlsRefs } : {}),
          ...(publicUrl ? { publicUrl } : {}),
          ...(routing === 'path' ? { routing } : {}),
          ...(domain ? { domain } : {}),
        },
        scope: flags.scope as 'system' | 'user',
      });
      if (!rendered.text)
        throw new AgentvmError(GateCode.unsafeUnitValue, rendered.diagnostics[0]?.summary ?? 'unit not rendered', {
          diagnostics: rendered.diagnostics,
        });
      return {
        result: {
          mode: 'unit',
          address,
          port,
          tls: tlsRefs !== undefined,
          url: null,
          publicUrl: publicUrl ?? null,
          unit: { name: GATE_UNIT, text: rendered.text },
        },
        text: rendered.text,
      };
    }
    const tls = tlsRefs
      ? { cert: readTlsReference(tlsRefs.cert, 'certificate'), key: readTlsReference(tlsRefs.key, 'key') }
      : undefined;
    // Listening for SIGTERM/SIGINT from before the server starts: a stop that arrives while it starts (the unit being
    // stopped, a test that saw listener.json) still closes it in order and flushes the audit log.
    const stopped = new Promise<void>((resolve) => {
      const stop = (): void => resolve();
      process.once('SIGTERM', stop);
      process.once('SIGINT', stop);
    });
    let server;
    try {
      server = await startGateServer({
        root,
        host: flags.host,
        address,
        port,
        ...(tls ? { tls } : {}),
        ...(publicUrl ? { publicUrl } : {}),
        routing,
        ...(domain ? { domain } : {}),
        onWarning: (m) => this.say(`agentvm gate: warning: ${m}`, 'stderr'),
      });
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'EADDRINUSE' || code === 'EADDRNOTAVAIL' || code === 'EACCES') {
        throw new AgentvmError(GateCode.listenFailed, `The gate cannot listen on ${address}:${port} (${code}).`, {
          detail:
            code === 'EADDRINUSE'
              ? 'Another process holds the port: stop it, or change the port (host spec spec.gate.port, or --port).'
              : code === 'EACCES'
                ? 'Ports below 1024 need privileges: use a higher port (host spec spec.gate.port, or --port).'
                : "The address is not one of this machine's: check spec.gate.address (or --address).",
          cause: error,
        });
      }
      throw error;
    }
    const scope = tls ? 'HTTPS' : isLoopback(address) ? 'HTTP, loopback only: no TLS certificate given' : 'HTTP';
    const base = publicUrl ?? server.url;
    const shownDomain = domain ?? (publicUrl ? new URL(publicUrl).hostname : 'localhost');
    const tag = isLocalhostDomain(shownDomain) ? '--<tag>' : '';
    const previews =
      routing === 'path'
        ? `${base}/p/<workload>/<preview>/`
        : `${new URL(base).protocol}//<preview>--<workload>${tag}.${shownDomain}${new URL(base).port ? `:${new URL(base).port}` : ''}/`;
    const banner = `agentvm gate listening on ${server.url} (${scope}); previews at ${previews}${publicUrl ? ' (through your proxy)' : ''}\n`;
    // Under --json stdout carries exactly one document (at exit): the banner goes to stderr then.
    (this.jsonEnabled() ? process.stderr : process.stdout).write(banner);
    await stopped;
    await server.close();
    return {
      result: {
        mode: 'served',
        address: server.address,
        port: server.port,
        tls: server.tls,
        url: server.url,
        publicUrl: publicUrl ?? null,
        unit: null,
      },
      text: 'agentvm gate stopped.',
    };
  }
}
