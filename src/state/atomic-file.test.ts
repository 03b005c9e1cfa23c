// Tests of atomic replacement and JSON reading on a real filesystem. (The crash test — SIGKILL in the middle of a
// loop of writes — runs child processes and lives in test/state-concurrency.test.ts.)

import { describe, it, expect, beforeEach, afterEach } from 'vitest';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { AgentvmError } from '../diagnostics/index.js';
import { readJsonFile, writeFileAtomic } from './atomic-file.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'agentvm-atomic-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('writeFileAtomic', () => {
  it('GIVEN no file WHEN written THEN the target holds the data and no temp file is left', () => {
    const target = path.join(dir, 'a.json');
    writeFileAtomic(target, '{"v":1}\n');
    expect(readFileSync(target, 'utf8')).toBe('{"v":1}\n');
    expect(readdirSync(dir)).toEqual(['a.json']);
  });

  it('GIVEN an existing file and a backup path WHEN replaced THEN the backup holds the old content and the target the new', () => {
    const target = path.join(dir, 'a.json');
    const backup = `${target}.backup`;
    writeFileAtomic(target, 'one', { backup });
    expect(readdirSync(dir)).toEqual(['a.json']); // first write: nothing to back up
    writeFileAtomic(target, 'two', { backup });
    expect(readFileSync(target, 'utf8')).toBe('two');
    expect(readFileSync(backup, 'utf8')).toBe('one');
    writeFileAtomic(target, 'three', { backup });
    expect(readFileSync(backup, 'utf8')).toBe('two');
    expect(statSync(backup).ino).not.toBe(statSync(target).ino);
    expect(readdirSync(dir).sort()).toEqual(['a.json', 'a.json.backup']);
  });

  it('GIVEN the rename fails (target is a directory) WHEN written THEN it throws and removes its temp file', () => {
    const target = path.join(dir, 'occupied');
    mkdirSync(path.join(target, 'child'), { recursive: true });
    expect(() => writeFileAtomic(target, 'data')).toThrow();
    expect(readdirSync(dir)).toEqual(['occupied']);
  });

  it('writes binary data and applies the mode to a new file', () => {
    const target = path.join(dir, 'bin');
    writeFileAtomic(target, new Uint8Array([0, 1, 2, 255]), { mode: 0o600 });
    expect([...readFileSync(target)]).toEqual([0, 1, 2, 255]);
    expect(statSync(target).mode & 0o777).toBe(0o600);
  });
});

describe('readJsonFile', () => {
  it('returns undefined for a missing file and the value for valid JSON', () => {
    expect(readJsonFile(path.join(dir, 'missing.json'))).toBeUndefined();
    writeFileSync(path.join(dir, 'ok.json'), '{"a":[1,2]}');
    expect(readJsonFile(path.join(dir, 'ok.json'))).toEqual({ a: [1, 2] });
  });

  it('throws file.invalid-json naming the file for a torn file', () => {
    const file = path.join(dir, 'torn.json');
    writeFileSync(file, '{"a":[1,');
    try {
      readJsonFile(file);
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(AgentvmError);
      expect((error as AgentvmError).code).toBe('file.invalid-json');
      expect((error as AgentvmError).message).toContain(file);
    }
  });
});
