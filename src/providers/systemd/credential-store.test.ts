import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { deliverStoredCredentials, envFileValue, staleStoredCredentials } from './credential-store.js';
import { SystemdCode } from './codes.js';

const dirs: string[] = [];
const tmp = (): string => {
  const d = mkdtempSync(path.join(os.tmpdir(), 'credstore-'));
  dirs.push(d);
  return d;
};
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('envFileValue', () => {
  it('reads VAR=value, export, quotes, comments; the last assignment wins; absent is undefined', () => {
    const text = '# c\nA=1\nexport B="two words"\nC=\'x#y\'\nD=plain # note\nA=3\n';
    expect([
      envFileValue(text, 'A'),
      envFileValue(text, 'B'),
      envFileValue(text, 'C'),
      envFileValue(text, 'D'),
      envFileValue(text, 'E'),
    ]).toEqual(['3', 'two words', 'x#y', 'plain', undefined]);
  });
});

describe('deliverStoredCredentials', () => {
  it('GIVEN an injected file: and an env-file: secret THEN values and a placeholder land 0600 in a 0700 directory; the placeholder is stable; a dropped secret is removed', () => {
    const d = tmp();
    writeFileSync(path.join(d, 'llm'), 'VALUE-1\n');
    writeFileSync(path.join(d, 'a.env'), 'TOKEN=VALUE-2\n');
    const store = path.join(d, 'store');
    const secrets = [
      { name: 'llm', ref: `file:${d}/llm`, inject: { host: 'api.example.com', header: 'x-api-key' } },
      { name: 'tok', ref: `env-file:${d}/a.env#TOKEN` },
      { name: 'plain', ref: `file:${d}/llm` },
    ];
    expect(deliverStoredCredentials(store, 'unit.w.p', secrets, undefined)).toEqual([]);
    const dir = path.join(store, 'unit.w.p');
    expect(readdirSync(dir).sort()).toEqual(['llm.placeholder', 'llm.value', 'tok.value']);
    expect(readFileSync(path.join(dir, 'llm.value'), 'utf8')).toBe('VALUE-1');
    expect(readFileSync(path.join(dir, 'tok.value'), 'utf8')).toBe('VALUE-2');
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    expect(statSync(path.join(dir, 'llm.value')).mode & 0o777).toBe(0o600);
    const placeholder = readFileSync(path.join(dir, 'llm.placeholder'), 'utf8');
    deliverStoredCredentials(store, 'unit.w.p', secrets, undefined);
    expect(readFileSync(path.join(dir, 'llm.placeholder'), 'utf8')).toBe(placeholder);
    deliverStoredCredentials(store, 'unit.w.p', secrets.slice(1), undefined);
    expect(readdirSync(dir)).toEqual(['tok.value']);
  });

  it('GIVEN an unreadable source or an unset variable THEN a diagnostic names the secret and file, never a value', () => {
    const d = tmp();
    writeFileSync(path.join(d, 'a.env'), 'OTHER=SECRET-VALUE\n');
    const diags = deliverStoredCredentials(
      path.join(d, 'store'),
      'unit.w.p',
      [
        { name: 'x', ref: `env-file:${d}/a.env#TOKEN` },
        { name: 'y', ref: `file:${d}/missing`, inject: { host: 'h.example', header: 'x' } },
      ],
      undefined,
    );
    expect(diags.map((x) => x.code)).toEqual([SystemdCode.secretUnreadable, SystemdCode.secretUnreadable]);
    expect(diags[0]!.summary).toContain('does not set TOKEN');
    expect(diags[1]!.summary).toContain('ENOENT');
    expect(JSON.stringify(diags)).not.toContain('SECRET-VALUE');
  });
});

describe('staleStoredCredentials', () => {
  it('GIVEN a value rotated in its env file THEN that secret (by name) is stale; unchanged ones are not', () => {
    const d = tmp();
    writeFileSync(path.join(d, 'a.env'), 'A=one\nB=two\n');
    const store = path.join(d, 'store');
    const secrets = [
      { name: 'a', ref: `env-file:${d}/a.env#A` },
      { name: 'b', ref: `env-file:${d}/a.env#B`, inject: { host: 'h.example', header: 'x' } },
    ];
    deliverStoredCredentials(store, 'unit.w.p', secrets, undefined);
    expect(staleStoredCredentials(store, 'unit.w.p', secrets)).toEqual([]);
    writeFileSync(path.join(d, 'a.env'), 'A=one\nB=three\n');
    expect(staleStoredCredentials(store, 'unit.w.p', secrets)).toEqual(['b']);
  });
});
