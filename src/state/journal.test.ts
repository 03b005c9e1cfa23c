// Tests of the apply journal on a real filesystem.

import { describe, it, expect, beforeEach, afterEach } from 'vitest';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { AgentvmError } from '../diagnostics/index.js';
import { beginJournal, readJournal } from './journal.js';

let dir: string;
let file: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'agentvm-journal-'));
  file = path.join(dir, 'web-1.journal.json');
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('apply journal', () => {
  it('GIVEN an apply WHEN resources complete THEN each mark is on disk at once, and finish deletes the journal', () => {
    expect(readJournal(file)).toBeNull();
    const journal = beginJournal(file, { applyId: 'a1', planDigest: 'sha256:p' }, new Date('2026-01-01T00:00:00Z'));
    expect(readJournal(file)).toEqual({ applyId: 'a1', planDigest: 'sha256:p', startedAt: '2026-01-01T00:00:00.000Z', pid: process.pid, completed: [], failed: [] });
    journal.markDone('release.research');
    expect(readJournal(file)?.completed).toEqual(['release.research']);
    journal.markFailed('unit.research.web', 'health check failed');
    journal.markDone('release.research');
    expect(readJournal(file)).toMatchObject({ completed: ['release.research'], failed: [{ address: 'unit.research.web', message: 'health check failed' }] });
    journal.markDone('unit.research.web'); // a retry that succeeded clears the failure
    expect(readJournal(file)).toMatchObject({ completed: ['release.research', 'unit.research.web'], failed: [] });
    expect(journal.isDone('unit.research.web')).toBe(true);
    journal.finish();
    expect(existsSync(file)).toBe(false);
    expect(readJournal(file)).toBeNull();
    expect(readdirSync(dir)).toEqual([]);
    expect(() => journal.markDone('x')).toThrow(AgentvmError);
  });

  it('GIVEN an interrupted apply WHEN the same plan is applied again THEN completed addresses carry over', () => {
    const first = beginJournal(file, { applyId: 'a1', planDigest: 'sha256:p' });
    first.markDone('release.research');
    // the process dies here: no finish()
    const interrupted = readJournal(file);
    expect(interrupted?.applyId).toBe('a1');
    const second = beginJournal(file, { applyId: 'a2', planDigest: 'sha256:p', resume: interrupted! });
    expect(second.isDone('release.research')).toBe(true);
    expect(readJournal(file)).toMatchObject({ applyId: 'a2', resumedFrom: 'a1', completed: ['release.research'] });
  });

  it('refuses to resume an interrupted apply of another plan', () => {
    beginJournal(file, { applyId: 'a1', planDigest: 'sha256:p' });
    const interrupted = readJournal(file)!;
    expect(() => beginJournal(file, { applyId: 'a2', planDigest: 'sha256:q', resume: interrupted })).toThrow(/another plan/);
    expect(JSON.parse(readFileSync(file, 'utf8')).applyId).toBe('a1');
  });

  it.each([
    ['torn JSON', '{"applyId":"a1","comp'],
    ['a wrong shape', '{"applyId":"a1","planDigest":"p","startedAt":"t","pid":1,"completed":[1],"failed":[]}'],
  ])('GIVEN %s THEN state.journal-corrupt names the file', (_name, text) => {
    writeFileSync(file, text);
    try {
      readJournal(file);
      expect.unreachable();
    } catch (error) {
      expect((error as AgentvmError).code).toBe('state.journal-corrupt');
      expect((error as AgentvmError).message).toContain(file);
    }
  });
});
