// What the microvm provider plans from a workload's manifest: `job.<workload>.<job>`, one Tier-2 job definition per
// job. The host's microVM settings (defaults filled in) are part of every definition: a job run reads only the
// definition apply installed, so how it boots must be in it (ADR 0009). Pure: no I/O.

import type { DesiredResource } from '../../model/index.js';
import type { ExpandRequest, ExpandResponse } from '../provider.js';
import { DEFAULT_DATA_ROOT } from '../systemd/data-mounts.js';
import { programsOf } from '../systemd/exec-allowlist.js';

export function expandJobs(req: ExpandRequest): ExpandResponse {
  const vm = req.host.spec.microvm ?? {};
  // The egress proxy's resolvers reach job runs through their definitions (ADR 0009: a run reads only what apply
  // installed); only when the host names them, so existing definitions keep their digests.
  const resolvers = req.host.spec.egress?.resolvers ?? [];
  const microvm = {
    driver: vm.driver ?? 'qemu',
    accel: vm.accel ?? 'auto',
    maxConcurrentJobs: vm.maxConcurrentJobs ?? 2,
    ...(resolvers.length ? { resolvers } : {}),
  };
  const resources: DesiredResource[] = [];
  for (const w of req.workloads) {
    // The contract's data grants and declared programs reach the guest (ADR 0024, 0022); only when there are any, so
    // definitions without them keep their digests.
    const data = (w.contract.spec.data ?? []).map((d) => ({ path: d.path, access: d.access }));
    const programs = programsOf(w.contract.spec.tools);
    const guest = {
      ...(data.length > 0 ? { data, dataRoot: req.host.spec.data?.root ?? DEFAULT_DATA_ROOT } : {}),
      ...(programs.length > 0 ? { programs } : {}),
    };
    for (const job of w.manifest.spec.jobs ?? []) {
      resources.push({
        address: `job.${w.name}.${job.name}`,
        provider: 'microvm',
        workload: w.name,
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
          riskTier: w.contract.spec.riskTier,
          egress: w.contract.spec.egress ?? [],
          microvm,
          ...guest,
        },
        dependsOn: [],
      });
    }
  }
  return { resources, diagnostics: [] };
}
