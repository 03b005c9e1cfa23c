// The memo of lockfile texts that passed the schema (ADR 0027): it only ever skips a check that would pass, a text
// that fails is refused every time, and a missing, corrupt, foreign or disabled memo gives the same lockfile.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AgentvmError } from '../diagnostics/index.js';
import { emptyLockfile, LOCKFILE_FORMAT_VERSION, parseLockfile, serializeLockfile } from './lockfile.js';
import { validatedTexts } from './validated-texts.js';

const source = { file: '/x/test.lock.json', backup: '/x/test.lock.json.bak', host: 'test' };
let dir: string;
const saved = { xdg: process.env.XDG_CACHE_HOME, off: process.env.AGENTVM_NO_CACHE };

beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'agentvm-validated-'));
  process.env.XDG_CACHE_HOME = dir;
  delete process.env.AGENTVM_NO_CACHE;
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
  for (const [k, v] of [
    ['XDG_CACHE_HOME', saved.xdg],
    ['AGENTVM_NO_CACHE', saved.off],
  ] as const)
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
});

const memoFile = (): string => path.join(dir, 'agentvm', 'validated-lockfiles.json');
const parse = (text: string) => parseLockfile(JSON.parse(text) as unknown, source, text);

describe('validated lockfile texts', () => {
  it('remembers a text that passed, and gives the same lockfile with the memo, without it, and with it corrupt', () => {
    const text = serializeLockfile(emptyLockfile('test', new Date('2026-01-01T00:00:00Z')));
    const memo = validatedTexts('lockfile.schema.json', LOCKFILE_FORMAT_VERSION);
    expect(memo.has(text)).toBe(false);
    const first = parse(text);
    expect(memo.has(text)).toBe(true);
    expect(memo.has(`${text} `)).toBe(false);
    expect(parse(text)).toEqual(first);
    // Only digests are kept.
    expect(readFileSync(memoFile(), 'utf8')).not.toContain('"lineage"');

    writeFileSync(memoFile(), '{"format":"agentvm-validated-texts/1","digests":[1,2');
    expect(memo.has(text)).toBe(false);
    expect(parse(text)).toEqual(first);
    rmSync(memoFile());
    process.env.AGENTVM_NO_CACHE = '1';
    expect(parse(text)).toEqual(first);
    expect(() => readFileSync(memoFile())).toThrow();
  });

  it('refuses a text that fails the schema every time, and never remembers it', () => {
    const lock = emptyLockfile('test', new Date('2026-01-01T00:00:00Z'));
    const bad = serializeLockfile({ ...lock, serial: -5 });
    for (let i = 0; i < 2; i++) {
      const error = (() => {
        try {
          parse(bad);
          return undefined;
        } catch (e) {
          return e;
        }
      })();
      expect(error).toBeInstanceOf(AgentvmError);
      expect((error as AgentvmError).code).toBe('state.corrupt');
    }
    expect(validatedTexts('lockfile.schema.json', LOCKFILE_FORMAT_VERSION).has(bad)).toBe(false);
  });

  it('keys the memo by the schema and format version: another version does not trust it', () => {
    const text = serializeLockfile(emptyLockfile('test', new Date('2026-01-01T00:00:00Z')));
    parse(text);
    expect(validatedTexts('lockfile.schema.json', LOCKFILE_FORMAT_VERSION + 1).has(text)).toBe(false);
    // Still checked: the host of a remembered text.
    expect(() => parseLockfile(JSON.parse(text) as unknown, { ...source, host: 'other' }, text)).toThrow(/host/);
  });
});
