// Issue 18, item 5: `tarball: /dev/zero` passed validate, then grew the process to gigabytes. Every file agentvm
// reads for a plan or apply is a regular file under a size limit, checked before reading: the real CLI applies a
// package release whose tarball is /dev/zero (and a FIFO with no writer) against a temp host root and must refuse
// it with release.tarball-unreadable, exit non-zero, within the test's kill timer (no duration is asserted).

import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { agentvm, assertBuilt, hasStackTrace } from './support/cli.js';
import { gitdir } from './support/gitdir.js';

const HOST =
  'apiVersion: agentvm.dev/v1alpha1\nkind: Host\nmetadata:\n  name: edge\nspec:\n  workloads:\n    - docs-helper\n';
const CONTRACT =
  'apiVersion: agentvm.dev/v1alpha1\nkind: WorkloadContract\nmetadata:\n  name: docs-helper\nspec:\n  owner: docs-team@example.com\n  riskTier: low\n  substrate: service\n';
const manifest = (tarball: string): string =>
  `apiVersion: agentvm.dev/v1alpha1\nkind: WorkloadManifest\nmetadata:\n  name: docs-helper\nspec:\n  archetype: package-install\n  source:\n    package:\n      name: docs-helper\n      version: 1.0.0\n      integrity: sha512-${'A'.repeat(86)}==\n      tarball: ${tarball}\n  profiles:\n    - name: docs\n      entrypoint: [node, bin/server.js]\n      listen:\n        port: 8101\n`;

describe('a tarball that is not a regular file is refused before it is read', () => {
  beforeAll(() => assertBuilt());

  it.each([['/dev/zero'], ['a FIFO with no writer']])(
    '%s',
    async (what) => {
      const scratch = mkdtempSync(join(tmpdir(), 'agentvm-bounded-cli-'));
      let tarball = what;
      if (what !== '/dev/zero') {
        tarball = join(scratch, 'fifo.tgz');
        execFileSync('mkfifo', [tarball]);
      }
      const repo = await gitdir({
        'hosts/edge.yaml': HOST,
        'workloads/docs-helper/contract.yaml': CONTRACT,
        'workloads/docs-helper/manifest.yaml': manifest(tarball),
      });
      try {
        const r = await agentvm(
          ['apply', '--repo', repo.dir, '--root', join(scratch, 'root'), '--auto-approve', '--json'],
          { timeoutMs: 120_000 },
        );
        expect(r.signal, 'killed by the timer: the read did not stop').toBeNull();
        expect(hasStackTrace(r.stdout + r.stderr)).toBe(false);
        expect(r.code).not.toBe(0);
        expect(r.stdout).toContain('release.tarball-unreadable');
        expect(r.stdout).toContain('is not a regular file');
      } finally {
        await repo.cleanup();
        rmSync(scratch, { recursive: true, force: true });
      }
    },
    180_000,
  );
});
