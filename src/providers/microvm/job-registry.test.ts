// The job run registry under a temporary host root: records, owner liveness (with real processes), orphan states,
// addresses and network slot claims.

import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { hostPaths } from '../../model/index.js';
import type { HostPaths } from '../provider.js';
import {
  claimSlot,
  createRunRecord,
  jobsDir,
  listRunRecords,
  newRunId,
  ownerAlive,
  processStartTicks,
  readRunRecord,
  releaseSlot,
  runAddress,
  runIdOfAddress,
  runState,
  updateRunRecord,
  type JobRunRecord,
} from './job-registry.js';

let root = '';
let paths: HostPaths;
beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'agentvm-registry-'));
  paths = hostPaths(root);
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

function record(overrides: Partial<JobRunRecord> = {}): JobRunRecord {
  const id = newRunId();
  return {
    formatVersion: 1,
    id,
    address: 'job.summarizer.summarize',
    host: 'edge-1',
    workload: 'summarizer',
    job: 'summarize',
    owner: { pid: process.pid, startTicks: processStartTicks(process.pid) },
    startedAt: '2026-01-01T00:00:00.000Z',
    deadline: '2026-01-01T00:10:00.000Z',
    netns: null,
    slot: null,
    vmmPid: null,
    ...overrides,
  };
}

/** A real process that has exited (and been reaped): its pid is dead. */
async function deadPid(): Promise<number> {
  const child = spawn('true');
  await new Promise((resolve) => child.on('close', resolve));
  return child.pid ?? 0;
}

describe('run records', () => {
  it('GIVEN a record written and updated THEN it reads back whole, and listing finds it with no stray files', async () => {
    const r = record();
    await createRunRecord(paths, r);
    await updateRunRecord(paths, { ...r, vmmPid: 1234 });

    expect(await readRunRecord(paths, r.id)).toEqual({ ...r, vmmPid: 1234 });
    expect((await listRunRecords(paths)).records.map((x) => x.id)).toEqual([r.id]);
    expect(readdirSync(jobsDir(paths))).toEqual([r.id]);
    expect(readdirSync(join(jobsDir(paths), r.id))).toEqual(['owner.json']);
  });

  it('GIVEN a run directory whose record was tampered with THEN listing reports it instead of guessing', async () => {
    const r = record({ netns: 'agentvm-someone-else' });
    await createRunRecord(paths, r);

    const listed = await listRunRecords(paths);

    expect(listed.records).toEqual([]);
    expect(listed.diagnostics.map((d) => d.code)).toEqual(['microvm.run-record-unreadable']);
  });

  it('GIVEN run addresses THEN the run id is found only in four-part job addresses', () => {
    const r = record();
    expect(runAddress(r)).toBe(`job.summarizer.summarize.${r.id}`);
    expect(runIdOfAddress(runAddress(r))).toBe(r.id);
    expect(runIdOfAddress('job.summarizer.summarize')).toBeUndefined();
    expect(runIdOfAddress('job.a.b.not-an-id')).toBeUndefined();
    expect(runIdOfAddress(`release.a.b.${r.id}`)).toBeUndefined();
  });
});

describe('owner liveness and orphan state', () => {
  const now = new Date('2026-01-01T00:05:00.000Z');

  it('GIVEN this process as owner within the deadline THEN the run is running', () => {
    const r = record();
    expect(ownerAlive(r)).toBe(true);
    expect(runState(r, now, ownerAlive(r))).toBe('running');
  });

  it('GIVEN an owner that exited THEN the run is owner-gone', async () => {
    const r = record({ owner: { pid: await deadPid(), startTicks: 1 } });
    expect(ownerAlive(r)).toBe(false);
    expect(runState(r, now, ownerAlive(r))).toBe('owner-gone');
  });

  it('GIVEN a live pid with another start time (pid reused) THEN the owner counts as gone', () => {
    const ticks = processStartTicks(process.pid) ?? 0;
    const r = record({ owner: { pid: process.pid, startTicks: ticks + 1 } });
    expect(ownerAlive(r)).toBe(false);
  });

  it('GIVEN a live owner past the deadline THEN the run is past-deadline', () => {
    const r = record();
    expect(runState(r, new Date('2026-01-01T00:10:00.001Z'), true)).toBe('past-deadline');
  });
});

describe('network slots', () => {
  it('GIVEN concurrent claims THEN every slot is distinct, and a released slot can be claimed again', async () => {
    const slots = await Promise.all(Array.from({ length: 40 }, () => claimSlot(paths)));
    expect(new Set(slots).size).toBe(40);
    for (const slot of slots) await releaseSlot(paths, slot);
    expect(readdirSync(jobsDir(paths))).toEqual([]);
  });
});
