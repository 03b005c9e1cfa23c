// Where credentials go (decisions/0023). A secret with `inject` never enters the workload: the egress proxy adds it to
// one header of HTTPS requests to one host. So:
//   - the injected host must be an allowed destination on a TLS port (otherwise the proxy would never see a request
//     it may inject into), and the value must be one apply can read into the store (file:, env-file:);
//   - at `critical` every secret that is an HTTP credential (its name says API key, token, bearer, OAuth, …) must be
//     injected — an agent holding the raw key can send it anywhere it reaches; at `high` that is a warning;
//   - `vault:` is refused here, at validate, rather than accepted and refused at apply: no provider delivers it yet.
// Invariant: no diagnostic quotes a value (references are quoted only through `quote`).

import { errorDiag, warningDiag, type Diagnostic } from '../../diagnostics/index.js';
import { quote } from '../../secrets/text-safety.js';
import { at, list, record, specOf, text, type WorkloadRule } from '../context.js';

/** Names that announce a credential sent in HTTP requests. */
const HTTP_CREDENTIAL = /(api[-_]?key|token|bearer|oauth|auth|access[-_]?key|client[-_]?secret)/i;
/** The proxy terminates TLS (and injects) only on these ports (egress/proxy.ts TLS_PORTS). */
const TLS_PORTS = new Set([443, 465, 636, 853, 993, 995, 5986, 6443, 8443, 9443]);

export function isHttpCredentialName(name: string): boolean {
  return HTTP_CREDENTIAL.test(name);
}

export const credentialRules: WorkloadRule = (ctx) => {
  const doc = ctx.contract;
  if (!doc) return [];
  const spec = specOf(doc);
  const out: Diagnostic[] = [];
  const egress = list(spec.egress).map((e) => ({
    host: text(record(e)?.host)?.toLowerCase().replace(/\.$/, ''),
    port: record(e)?.port,
  }));
  const service = text(spec.substrate) !== 'job';
  list(spec.secrets).forEach((raw, i) => {
    const secret = record(raw);
    const name = text(secret?.name) ?? `#${i + 1}`;
    const ref = text(secret?.ref) ?? '';
    const inject = record(secret?.inject);
    if (ref.startsWith('vault:')) {
      out.push(
        errorDiag(
          'policy.secret-vault-unsupported',
          `Secret ${quote(name, `#${i + 1}`)} uses a \`vault:\` reference, which no provider delivers yet.`,
          {
            detail:
              "Put the value in a file on the host and refer to it as `file:/abs/path` or `env-file:/abs/path#VAR` (read at apply into agentvm's root-only credential store), or use `systemd-creds:` in system scope.",
            ...at(doc, ['spec', 'secrets', i, 'ref']),
            address: ctx.address,
          },
        ),
      );
    }
    if (inject) {
      const host = text(inject.host)?.toLowerCase().replace(/\.$/, '');
      if (!service) {
        out.push(
          errorDiag(
            'policy.inject-unsupported',
            `Secret ${quote(name, `#${i + 1}`)} is injected, but \`job\` workloads have no injecting proxy yet.`,
            {
              detail: 'Remove `inject` (the job then holds the value) or run the workload as a service.',
              ...at(doc, ['spec', 'secrets', i, 'inject']),
              address: ctx.address,
            },
          ),
        );
      } else if (host && !egress.some((e) => e.host === host && typeof e.port === 'number' && TLS_PORTS.has(e.port))) {
        out.push(
          errorDiag(
            'policy.inject-host-not-allowed',
            `Secret ${quote(name, `#${i + 1}`)} is injected for ${quote(host, 'its host')}, which the egress allowlist does not allow on a TLS port.`,
            {
              detail: `Add {host: ${quote(host, 'the host')}, port: 443} to spec.egress: the proxy injects only into HTTPS requests it terminates for an allowed destination.`,
              ...at(doc, ['spec', 'secrets', i, 'inject', 'host']),
              address: ctx.address,
            },
          ),
        );
      }
      if (ref && !ref.startsWith('file:') && !ref.startsWith('env-file:')) {
        out.push(
          errorDiag(
            'policy.inject-unreadable',
            `Secret ${quote(name, `#${i + 1}`)} is injected, but apply cannot read a \`${ref.split(':')[0]}:\` value into the credential store.`,
            {
              detail: 'Give injected secrets as `file:/abs/path` or `env-file:/abs/path#VAR`.',
              ...at(doc, ['spec', 'secrets', i, 'ref']),
              address: ctx.address,
            },
          ),
        );
      }
      return;
    }
    if (!service || !isHttpCredentialName(name) || (ctx.tier !== 'critical' && ctx.tier !== 'high')) return;
    const report = ctx.tier === 'critical' ? errorDiag : warningDiag;
    out.push(
      report(
        'policy.credential-not-injected',
        `Secret ${quote(name, `#${i + 1}`)} looks like an HTTP credential and is handed to the ${ctx.tier} workload itself.`,
        {
          detail:
            'A compromised agent sends a key it holds to any destination it can reach. Let the egress proxy add it instead: `inject: {host: api.example.com, header: authorization, format: "Bearer {}"}` (the host must be in spec.egress on port 443); the workload then holds a worthless placeholder (README, "Credentials").',
          ...at(doc, ['spec', 'secrets', i]),
          address: ctx.address,
        },
      ),
    );
  });
  return out;
};
