// Substrate consistency: the contract says what the workload is (a Tier-1 `service` of gateway units, or Tier-2
// ephemeral microVM `job`s) and the manifest must deploy exactly that — a job workload that ships gateway
// profiles would run outside its microVM. Job names are unique within a workload (they become addresses).

import { errorDiag, type Diagnostic } from '../../diagnostics/index.js';
import { at, lineOf, list, record, specOf, text, type WorkloadRule } from '../context.js';
import { quote } from '../../secrets/text-safety.js';

export const substrateRules: WorkloadRule = (ctx) => {
  const doc = ctx.manifest;
  const contract = ctx.contract;
  const out: Diagnostic[] = [];
  if (!doc) return out;
  const spec = specOf(doc);
  const profiles = list(spec.profiles);
  const jobs = list(spec.jobs);

  const substrate = text(specOf(contract).substrate);
  if (contract && (substrate === 'service' || substrate === 'job')) {
    const mismatch = (summary: string, detail: string, field: 'profiles' | 'jobs'): void => {
      out.push(
        errorDiag('workload.substrate-mismatch', summary, {
          detail: `The contract declares \`substrate: ${substrate}\` at ${lineOf(contract, ['spec', 'substrate'])}. ${detail}`,
          ...at(doc, ['spec', field]),
          address: ctx.address,
        }),
      );
    };
    if (substrate === 'service') {
      if (profiles.length === 0)
        mismatch(
          `Service workload \`${ctx.name}\` has no profiles, so nothing would run.`,
          'Add at least one entry under `profiles` (name, entrypoint), or make it a Tier-2 job.',
          'profiles',
        );
      if (jobs.length > 0)
        mismatch(
          `Service workload \`${ctx.name}\` defines Tier-2 jobs.`,
          'Jobs run in ephemeral microVMs and belong to a workload with `substrate: job`; move them to their own workload or change the substrate.',
          'jobs',
        );
    } else {
      if (jobs.length === 0)
        mismatch(
          `Job workload \`${ctx.name}\` has no jobs, so nothing would run.`,
          'Add at least one entry under `jobs` (name, kernel, rootfs, command), or make it a service.',
          'jobs',
        );
      if (profiles.length > 0)
        mismatch(
          `Job workload \`${ctx.name}\` defines gateway profiles, which would run on the host outside any microVM.`,
          'Remove `profiles` (a job runs only in its microVM), or split the service part into its own workload with its own contract.',
          'profiles',
        );
    }
  }

  const seen = new Map<string, number>();
  jobs.forEach((raw, i) => {
    const name = text(record(raw)?.name);
    if (name === undefined) return;
    const first = seen.get(name);
    if (first === undefined) {
      seen.set(name, i);
      return;
    }
    out.push(
      errorDiag('job.duplicate', `Job ${quote(name, `#${i + 1}`)} is defined twice in workload \`${ctx.name}\`.`, {
        detail: `The first definition is at ${lineOf(doc, ['spec', 'jobs', first])}. Job names are unique within a workload (the job address is \`job.${ctx.name}.<name>\`); rename one.`,
        ...at(doc, ['spec', 'jobs', i, 'name']),
        address: ctx.address,
      }),
    );
  });
  return out;
};
