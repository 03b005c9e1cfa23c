// `agentvm state unlock <id>` is the fix every `state.locked` error prints, with the id only: it must work as printed
// (no --host), for a host's lease and for the audit log's append lock alike, and leave an audited record.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { agentvm, assertBuilt, hasStackTrace } from './support/cli.js';
import { stateBackend } from '../src/app/plan.js';
import { acquireLeaseLock } from '../src/state/lease-lock.js';
import { hostPaths } from '../src/model/index.js';

let root: string;

describe('state unlock <id> as printed', () => {
  beforeAll(() => {
    assertBuilt();
    root = mkdtempSync(path.join(os.tmpdir(), 'agentvm-unlock-'));
  });
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it('GIVEN a live host lease THEN the printed `state unlock <id>` (no --host) breaks it and audits the break', async () => {
    const lease = await stateBackend(root).acquireLease('edge-1', 'held by the test', { renew: false });
    try {
      const refused = await agentvm(['state', 'unlock', '00000000-0000-4000-8000-000000000000', '--root', root]);
      expect(refused.code).toBe(1);
      expect(refused.stderr + refused.stdout).toContain('state.not-locked');
      const unlock = await agentvm(['state', 'unlock', lease.id, '--root', root]);
      expect(unlock.code, unlock.stderr).toBe(0);
      expect(unlock.stdout).toContain(`Broke lease ${lease.id}`);
      expect(existsSync(path.join(hostPaths(root).state, 'edge-1.lease.json'))).toBe(false);
    } finally {
      lease.release();
    }
    const log = readFileSync(path.join(hostPaths(root).audit, 'audit.jsonl'), 'utf8');
    expect(log).toContain('"event":"state.unlock"');
  });

  it('GIVEN the audit append lock held (its holder hung) THEN appends report state.locked with an id, and `state unlock <id>` clears it', async () => {
    const file = path.join(hostPaths(root).audit, 'audit.jsonl.lock');
    const hung = acquireLeaseLock(file, 'edge-1', 'audit-append', { renew: false, durable: false });
    try {
      const unlock = await agentvm(['state', 'unlock', hung.id, '--root', root]);
      expect(hasStackTrace(unlock.stdout + unlock.stderr)).toBe(false);
      expect(unlock.code, unlock.stderr).toBe(0);
      expect(unlock.stdout).toContain('audit log append lock');
      expect(existsSync(file)).toBe(false);
      const verify = await agentvm(['audit', 'verify', '--root', root]);
      expect(verify.code, verify.stdout).toBe(0);
    } finally {
      hung.release();
    }
  });
});
