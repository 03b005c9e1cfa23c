// Expands the desired state of one host into addressed resources (DESIGN §3):
//   release.<workload>            the workload's release (release.git or release.package)
//   unit.<workload>.<profile>     one gateway unit per profile (systemd), after the release; with a canary, the
//                                 other profiles' units after the canary profile's unit
//   job.<workload>.<job>          a Tier-2 job definition (microvm)
//   gate.<workload>.<preview>     a preview gate route (gate), after the workload's units and the gate server
//   gate.server                   the host's preview gate, `agentvm-gate.service` (gate), only when the host has at
//                                 least one preview; a host-level resource: its workload is HOST_WORKLOAD
//   egress.server                 the host's egress proxy, `agentvm-egress.service` (egress), when the host runs at
//                                 least one profile: every profile is its caller, every unit depends on it
// Pure: no I/O. Workloads whose documents failed to load are skipped (their diagnostics already exist).

import { posix } from 'node:path';
import type { DesiredState, WorkloadDefinition } from '../contracts/desired-state.js';
import type { Address, DesiredResource } from './types.js';

export const PROVIDER_RELEASE_GIT = 'release.git';
export const PROVIDER_RELEASE_PACKAGE = 'release.package';
export const PROVIDER_SYSTEMD = 'systemd';
export const PROVIDER_MICROVM = 'microvm';
export const PROVIDER_GATE = 'gate';
export const PROVIDER_EGRESS = 'egress';
/** The host's egress proxy: one per host, like gate.server. */
export const EGRESS_SERVER_ADDRESS: Address = 'egress.server';

export const releaseAddress = (workload: string): Address => `release.${workload}`;

/** The host's preview gate server. Two segments, so it can never equal a route's `gate.<workload>.<preview>`. */
export const GATE_SERVER_ADDRESS: Address = 'gate.server';
/**
 * The `workload` of host-level resources (gate.server). Not a DNS label, so no workload can be named like it; views
 * group by it like a workload name and sort it first (`(` precedes every letter).
 */
export const HOST_WORKLOAD = '(host)';

/** Must equal the release.package provider's identity: same name and version with another tarball is another release. */
export function packageIdentity(name: string, version: string, integrity: string): string {
  return `${name}@${version}#${integrity}`;
}

/** Must equal the release.package provider's release id (`packageReleaseId`): a scope's `/` becomes `+`. */
export function packageReleaseDir(name: string, version: string): string {
  return `${name.replace('/', '+')}@${version}`;
}

export function expandHost(state: DesiredState, host: string): DesiredResource[] {
  const hostDoc = state.hosts.get(host);
  if (!hostDoc) return [];
  const out: DesiredResource[] = [];
  const scope = hostDoc.value.spec.systemd?.scope ?? 'system';
  const vm = hostDoc.value.spec.microvm ?? {};
  // The egress proxy's resolvers reach job runs through their definitions (ADR 0009: a run reads only what apply
  // installed); only when the host names them, so existing definitions keep their digests.
  const resolvers = hostDoc.value.spec.egress?.resolvers ?? [];
  const microvm = { driver: vm.driver ?? 'qemu', accel: vm.accel ?? 'auto', maxConcurrentJobs: vm.maxConcurrentJobs ?? 2, ...(resolvers.length ? { resolvers } : {}) } as const;
  for (const name of hostDoc.value.spec.workloads ?? []) {
    const def = state.workloads.get(name);
    if (def) out.push(...expandWorkload(def, state.repo, { scope, microvm }));
  }
  // Every profile reaches the network only through the host's egress proxy (decisions/0016): the proxy is a caller
  // list (each profile's allowlist and listener) and each unit waits for it, so its socket and port bridge exist before
  // the unit starts. Without profiles there is nothing to confine, and no proxy.
  const units = out.filter((r) => r.provider === PROVIDER_SYSTEMD);
  if (units.length > 0) {
    out.push({
      address: EGRESS_SERVER_ADDRESS,
      provider: PROVIDER_EGRESS,
      workload: HOST_WORKLOAD,
      identity: 'agentvm-egress.service',
      config: {
        scope,
        resolvers: hostDoc.value.spec.egress?.resolvers ?? [],
        callers: units.map((u) => ({
          id: u.address,
          workload: u.workload,
          profile: u.config.profile,
          entries: u.config.egress,
          listenPort: (u.config.listen as { port?: number } | null)?.port ?? null,
        })),
      },
      dependsOn: [],
    });
    for (const u of units) u.dependsOn = [...u.dependsOn, EGRESS_SERVER_ADDRESS];
  }
  // The gate runs only where there is something to gate: a host without previews has no gate.server, and a plan
  // deletes the one it had (unit stopped, disabled, removed).
  const routes = out.filter((r) => r.provider === PROVIDER_GATE);
  if (routes.length > 0) {
    const gate = hostDoc.value.spec.gate ?? {};
    out.push({
      address: GATE_SERVER_ADDRESS,
      provider: PROVIDER_GATE,
      workload: HOST_WORKLOAD,
      identity: 'agentvm-gate.service',
      config: { address: gate.address ?? '127.0.0.1', port: gate.port ?? 8443, tls: gate.tls ? { cert: gate.tls.cert, key: gate.tls.key } : null, ...(gate.publicUrl ? { publicUrl: gate.publicUrl } : {}), scope },
      dependsOn: [],
    });
    for (const r of routes) r.dependsOn = [...r.dependsOn, GATE_SERVER_ADDRESS];
  }
  return out;
}

/**
 * Source locations may be relative to the desired-state repository (`./…`, `../…`); they are resolved against
 * `repoDir` here so providers only ever see absolute paths or URLs.
 */
export function resolveSourceLocation(location: string, repoDir: string): string {
  return location.startsWith('./') || location.startsWith('../') ? posix.normalize(`${repoDir.replace(/\/$/, '')}/${location}`) : location;
}

export interface ExpandOptions {
  /** The host's systemd scope (Host spec.systemd.scope), carried into every unit's config. */
  scope?: 'system' | 'user';
  /**
   * The host's microVM settings (Host spec.microvm, defaults filled in), carried into every job definition: a job
   * run reads only the definition apply installed, so how it boots must be part of it (ADR 0009).
   */
  microvm?: { driver: 'qemu' | 'firecracker'; accel: 'kvm' | 'tcg' | 'auto'; maxConcurrentJobs: number; resolvers?: readonly string[] };
}

export function expandWorkload(def: WorkloadDefinition, repoDir: string, opts: ExpandOptions = {}): DesiredResource[] {
  const manifest = def.manifest?.value;
  const contract = def.contract?.value;
  if (!manifest || !contract) return [];
  const w = def.name;
  const out: DesiredResource[] = [];
  const src = manifest.spec.source;
  const release = releaseAddress(w);
  let hasRelease = false;
  // The release directory the workload's units run from (`<paths.releases>/<workload>/<releaseId>`).
  let releaseId: string | null = null;
  if (manifest.spec.archetype === 'git-release' && src.git) {
    out.push({
      address: release,
      provider: PROVIDER_RELEASE_GIT,
      workload: w,
      identity: src.git.commit,
      config: { repo: resolveSourceLocation(src.git.repo, repoDir), commit: src.git.commit, ...(src.git.subdir ? { subdir: src.git.subdir } : {}), ...signatureConfig(def) },
      dependsOn: [],
    });
    hasRelease = true;
    releaseId = src.git.commit;
  } else if (manifest.spec.archetype === 'package-install' && src.package) {
    const p = src.package;
    out.push({
      address: release,
      provider: PROVIDER_RELEASE_PACKAGE,
      workload: w,
      identity: packageIdentity(p.name, p.version, p.integrity),
      config: { name: p.name, version: p.version, integrity: p.integrity, tarball: resolveSourceLocation(p.tarball, repoDir), ...signatureConfig(def) },
      dependsOn: [],
    });
    hasRelease = true;
    releaseId = packageReleaseDir(p.name, p.version);
  }

  const unitAddresses: Address[] = [];
  if (contract.spec.substrate === 'service') {
    // Canary before promotion: every other profile's unit waits for the canary's (which soaks after a promotion), so
    // a canary that fails leaves them untouched (apply skips dependents of a failed resource).
    const canaryProfile = manifest.spec.canary?.profile;
    const canaryUnit = (manifest.spec.profiles ?? []).some((p) => p.name === canaryProfile) ? `unit.${w}.${canaryProfile}` : undefined;
    for (const profile of manifest.spec.profiles ?? []) {
      const address = `unit.${w}.${profile.name}`;
      unitAddresses.push(address);
      out.push({
        address,
        provider: PROVIDER_SYSTEMD,
        workload: w,
        identity: `${w}/${profile.name}`,
        config: {
          profile: profile.name,
          entrypoint: profile.entrypoint,
          env: profile.env ?? {},
          listen: profile.listen ?? null,
          health: profile.health ?? null,
          reload: profile.reload ?? false,
          riskTier: contract.spec.riskTier,
          egress: contract.spec.egress ?? [],
          secrets: (contract.spec.secrets ?? []).map((s) => ({ name: s.name, ref: s.ref })),
          canary: manifest.spec.canary ?? null,
          releaseId,
          scope: opts.scope ?? 'system',
        },
        dependsOn: [...(hasRelease ? [release] : []), ...(canaryUnit && canaryUnit !== address ? [canaryUnit] : [])],
      });
    }
  }
  for (const job of manifest.spec.jobs ?? []) {
    out.push({
      address: `job.${w}.${job.name}`,
      provider: PROVIDER_MICROVM,
      workload: w,
      // The initramfs only when present (disk jobs): existing definitions keep their identity and digest.
      identity: `${job.kernel.sha256}/${job.rootfs.sha256}${job.initramfs === undefined ? '' : `/${job.initramfs.sha256}`}`,
      config: {
        job: job.name,
        kernel: job.kernel,
        rootfs: job.rootfs,
        ...(job.initramfs === undefined ? {} : { initramfs: job.initramfs }),
        command: job.command,
        vcpus: job.vcpus ?? 1,
        memoryMiB: job.memoryMiB ?? 256,
        timeoutSeconds: job.timeoutSeconds ?? 300,
        riskTier: contract.spec.riskTier,
        egress: contract.spec.egress ?? [],
        microvm: opts.microvm ?? { driver: 'qemu', accel: 'auto', maxConcurrentJobs: 2 },
      },
      dependsOn: [],
    });
  }
  for (const preview of manifest.spec.previews ?? []) {
    out.push({
      address: `gate.${w}.${preview.name}`,
      provider: PROVIDER_GATE,
      workload: w,
      identity: `${w}/${preview.name}`,
      config: { preview: preview.name, upstream: preview.upstream, maxTtl: preview.maxTtl, grantees: preview.grantees ?? [] },
      dependsOn: unitAddresses,
    });
  }
  return out;
}

function signatureConfig(def: WorkloadDefinition): Record<string, unknown> {
  const sig = def.manifest?.value.spec.signature;
  if (!sig) return {};
  return { signature: { bundle: `${def.dir}/${sig.bundle}`, identity: sig.identity ?? null, issuer: sig.issuer ?? null, key: sig.key ? `${def.dir}/${sig.key}` : null } };
}
