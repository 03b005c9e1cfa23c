// Per-host uniqueness: everything on one host shares one systemd namespace, one loopback and one preview gate.
// Profile names are unit instance names (agent-gateway@<profile>.service), so two workloads on a host may not
// share one; listen ports may not collide (with each other or with the gate); preview names are gate routes.
// The gate itself listens on loopback unless it terminates TLS.
// Work is linear in the number of profiles per host: one map per namespace, no pairwise comparison.

import type { LoadedDocument } from '../../contracts/desired-state.js';
import type { JsonPath } from '../../contracts/yaml-document.js';
import { errorDiag, type Diagnostic } from '../../diagnostics/index.js';
import type { WorkloadManifest } from '../../generated/workload-manifest.js';
import { at, lineOf, list, record, specOf, text, type PolicyRule } from '../context.js';
import { quote } from '../../secrets/text-safety.js';

/** The gate's port when the host does not set one (host.schema.json's default). */
const DEFAULT_GATE_PORT = 8443;
const LOOPBACK = /^(?:127\.\d{1,3}\.\d{1,3}\.\d{1,3}|::1|\[::1\]|localhost)$/;

interface Claim {
  workload: string;
  profile: string;
  doc: LoadedDocument<WorkloadManifest>;
  path: JsonPath;
}

export const hostRules: PolicyRule = ({ state }) => {
  const out: Diagnostic[] = [];
  for (const [hostName, host] of state.hosts) {
    const spec = specOf(host);
    const profiles = new Map<string, Claim>();
    const ports = new Map<number, Claim>();
    const previews = new Map<string, Claim>();
    let hasPreviews = false;
    const onHost = new Set(list(spec.workloads).filter((w): w is string => typeof w === 'string'));

    for (const workload of onHost) {
      const doc = state.workloads.get(workload)?.manifest;
      if (!doc) continue;
      const address = `workload.${workload}`;
      list(specOf(doc).profiles).forEach((raw, i) => {
        const profile = record(raw);
        const name = text(profile?.name);
        if (name === undefined) return;
        const claim: Claim = { workload, profile: name, doc, path: ['spec', 'profiles', i, 'name'] };
        const owner = profiles.get(name);
        if (!owner) profiles.set(name, claim);
        else if (owner.workload !== workload) {
          out.push(
            errorDiag(
              'host.profile-collision',
              `Workloads \`${owner.workload}\` and \`${workload}\` both define profile ${quote(name, 'with the same name')} on host \`${hostName}\`; both would be agent-gateway@${name}.service.`,
              {
                detail: `The other profile is at ${lineOf(owner.doc, owner.path)}. Profile names are unit names and must be unique per host: rename one (e.g. prefix it with the workload name), or run the workloads on different hosts.`,
                ...at(doc, claim.path),
                address,
              },
            ),
          );
        }
        const port = record(profile?.listen)?.port;
        if (typeof port !== 'number') return;
        const portClaim: Claim = { ...claim, path: ['spec', 'profiles', i, 'listen', 'port'] };
        const portOwner = ports.get(port);
        if (!portOwner) ports.set(port, portClaim);
        else {
          out.push(
            errorDiag(
              'host.port-collision',
              `Profile ${quote(name)} of workload \`${workload}\` listens on port ${port}, which profile ${quote(portOwner.profile)} of workload \`${portOwner.workload}\` already uses on host \`${hostName}\`.`,
              {
                detail: `The other listener is at ${lineOf(portOwner.doc, portOwner.path)}. Give each profile on a host its own port (or a unix socket).`,
                ...at(doc, portClaim.path),
                address,
              },
            ),
          );
        }
      });
      list(specOf(doc).previews).forEach((raw, i) => {
        hasPreviews = true;
        const name = text(record(raw)?.name);
        if (name === undefined) return;
        const claim: Claim = { workload, profile: name, doc, path: ['spec', 'previews', i, 'name'] };
        const owner = previews.get(name);
        if (!owner) previews.set(name, claim);
        else if (owner.workload !== workload) {
          out.push(
            errorDiag(
              'host.preview-collision',
              `Workloads \`${owner.workload}\` and \`${workload}\` both define preview ${quote(name, 'with the same name')} on host \`${hostName}\`; the gate routes previews by name.`,
              {
                detail: `The other preview is at ${lineOf(owner.doc, owner.path)}. Rename one so every preview on the host has its own route.`,
                ...at(doc, claim.path),
                address,
              },
            ),
          );
        }
      });
    }

    const gate = record(spec.gate);
    if (gate || hasPreviews) {
      const gatePort = typeof gate?.port === 'number' ? gate.port : DEFAULT_GATE_PORT;
      const owner = ports.get(gatePort);
      if (owner) {
        out.push(
          errorDiag(
            'host.port-collision',
            `Profile ${quote(owner.profile)} of workload \`${owner.workload}\` listens on port ${gatePort}, which the preview gate of host \`${hostName}\` uses.`,
            {
              detail: `Move the profile to another port, or set \`spec.gate.port\` in hosts/${hostName}.yaml to a free one${gate?.port === undefined ? ` (the gate defaults to ${DEFAULT_GATE_PORT})` : ''}.`,
              ...at(owner.doc, owner.path),
              address: `workload.${owner.workload}`,
            },
          ),
        );
      }
      const address = text(gate?.address);
      if (address !== undefined && !LOOPBACK.test(address) && !record(gate?.tls)) {
        out.push(
          errorDiag(
            'host.gate-exposed',
            `The preview gate of host \`${hostName}\` listens on ${quote(address, 'a non-loopback address')} without TLS.`,
            {
              detail:
                'Grants are bearer credentials: off loopback they must travel over TLS. Add `spec.gate.tls` (cert and key by reference), or listen on `127.0.0.1` behind a TLS-terminating proxy.',
              ...at(host, ['spec', 'gate', 'address']),
            },
          ),
        );
      }
    }
  }
  return out;
};
