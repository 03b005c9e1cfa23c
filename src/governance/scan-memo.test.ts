// The memo of documents the secret scan found clean (ADR 0027): the policy's findings are the same with it, without
// it and with it corrupt; a document holding a secret is never remembered and is reported on every run; the memo
// holds digests, never a text.
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { scratchCache } from '../contracts/scratch-cache.fixture.js';
import { evaluatePolicy } from './index.js';
import { BASELINE, edit, stateOf } from './policy.fixture.js';
import { openScanMemo } from './scan-memo.js';

const JWT = [
  'eyJhbGciOiJIUzI1NiJ9',
  'eyJzdWIiOiJtZW1vLXRlc3QiLCJpYXQiOjE3MDAwMDAwMDB9',
  'c2lnbmF0dXJlLW5vdC1yZWFsLW1lbW8',
].join('.');
const MANIFEST = 'workloads/web/manifest.yaml';

describe('secret scan memo', () => {
  const file = join(scratchCache('agentvm-scan-memo-'), 'agentvm', 'secret-scan-clean.json');

  it.each([
    ['a JWT in an env value', `AGENT_SESSION: ${JWT}`],
    ['a JWT in a YAML comment', `AGENT_NOTE: ok # ${JWT}`],
  ])('remembers the clean documents only, and reports %s on every run', (_name, line) => {
    rmSync(file, { force: true });
    const files = edit(BASELINE, MANIFEST, 'AGENT_PROFILE: core', `AGENT_PROFILE: core\n        ${line}`);
    const codes = (): string[] => evaluatePolicy(stateOf(files)).map((d) => `${d.code} ${d.location?.file}`);
    const first = codes();
    expect(first).toContain(`policy.secret-literal ${MANIFEST}`);
    expect(existsSync(file)).toBe(true);
    const memo = openScanMemo();
    expect(memo.clean(files[MANIFEST]!)).toBe(false);
    expect(memo.clean(files['workloads/web/contract.yaml']!)).toBe(true);
    expect(readFileSync(file, 'utf8')).not.toContain('eyJ');
    // Warm, corrupt, disabled: the same findings.
    expect(codes()).toEqual(first);
    writeFileSync(file, '{"format":"agentvm-scan-memo/1","digests":["x"');
    expect(codes()).toEqual(first);
    process.env.AGENTVM_NO_CACHE = '1';
    try {
      expect(codes()).toEqual(first);
    } finally {
      delete process.env.AGENTVM_NO_CACHE;
    }
  });

  it('skips a remembered document, and a changed document is scanned again', () => {
    rmSync(file, { force: true });
    evaluatePolicy(stateOf(BASELINE));
    const memo = openScanMemo();
    expect(memo.clean(BASELINE[MANIFEST]!)).toBe(true);
    // The same manifest plus a secret is another text: scanned, found.
    const files = edit(BASELINE, MANIFEST, 'AGENT_PROFILE: core', `AGENT_PROFILE: core\n        AGENT_SESSION: ${JWT}`);
    expect(evaluatePolicy(stateOf(files)).map((d) => d.code)).toContain('policy.secret-literal');
    expect(evaluatePolicy(stateOf(BASELINE)).map((d) => d.code)).not.toContain('policy.secret-literal');
  });
});
