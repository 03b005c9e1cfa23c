// Use cases behind `agentvm state migrate|push|pull` (ADR 0017): the PostgreSQL schema, and moving one host's state
// between the local files under --root and PostgreSQL with its audit chain.

import { resolve } from 'node:path';
import { AgentvmError } from '../diagnostics/index.js';
import { hostPaths } from '../model/index.js';
import { assertHostName, LocalStateBackend } from '../state/index.js';
import { LATEST_SCHEMA_VERSION } from '../state/postgres/schema.js';
import { pullState, pushState, type TransferResult } from '../state/transfer.js';
import { checkRoot } from './plan.js';
import { postgresBackend, type StateSelection } from './state-backend.js';

export interface MigrateResult {
  formatVersion: 1;
  backend: string;
  from: number;
  to: number;
  latest: number;
  applied: Array<{ version: number; name: string }>;
  /** --check: true when the schema is at this build's version. */
  current: boolean;
}

export function postgresSelection(flags: { 'state-url'?: string | undefined }): StateSelection {
  return { backend: 'postgres', ...(flags['state-url'] ? { url: flags['state-url'] } : {}), from: '--state-url' };
}

export async function migrateState(selection: StateSelection, check: boolean): Promise<MigrateResult> {
  const backend = postgresBackend(selection);
  if (check) {
    const v = await backend.schemaVersion();
    return {
      formatVersion: 1,
      backend: backend.location,
      from: v,
      to: v,
      latest: LATEST_SCHEMA_VERSION,
      applied: [],
      current: v === LATEST_SCHEMA_VERSION,
    };
  }
  const r = await backend.migrate();
  return {
    formatVersion: 1,
    backend: backend.location,
    ...r,
    latest: LATEST_SCHEMA_VERSION,
    current: r.to === LATEST_SCHEMA_VERSION,
  };
}

export async function transferState(
  direction: 'push' | 'pull',
  root: string,
  host: string,
  selection: StateSelection,
): Promise<TransferResult> {
  assertHostName(host);
  checkRoot(root);
  const local = new LocalStateBackend(hostPaths(resolve(root)));
  const remote = postgresBackend(selection);
  const result = direction === 'push' ? await pushState(local, remote, host) : await pullState(remote, local, host);
  if (result.auditRecordsTotal === 0 && result.serial === 0) {
    throw new AgentvmError(
      'state.nothing-to-move',
      `Host "${host}" has no state in ${direction === 'push' ? local.location : remote.location}.`,
      {
        detail: '`agentvm state list` shows the hosts that have state.',
      },
    );
  }
  return result;
}
