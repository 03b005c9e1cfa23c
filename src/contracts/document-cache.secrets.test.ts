// Issue 18, item 4: the document cache stored every document that passed its schema, before the secret scan — a
// JWT refused by validate was on disk in ~/.cache/agentvm/documents.json afterwards. Now a document is cached only
// when the secret checks find nothing in it; a clean document is still cached (the cache keeps working).

import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BASELINE, edit, stateOf } from '../governance/policy.fixture.js';

const JWT = [
  'eyJhbGciOiJIUzI1NiJ9',
  'eyJzdWIiOiJjYWNoZS10ZXN0IiwiaWF0IjoxNzAwMDAwMDAwfQ',
  'c2lnbmF0dXJlLW5vdC1yZWFsLWNhY2hl',
].join('.');
const MANIFEST = 'workloads/web/manifest.yaml';

describe('the document cache never stores a document the secret scan refuses', () => {
  const dir = mkdtempSync(join(tmpdir(), 'agentvm-cache-secrets-'));
  const saved = { xdg: process.env.XDG_CACHE_HOME, off: process.env.AGENTVM_NO_CACHE };
  beforeAll(() => {
    process.env.XDG_CACHE_HOME = dir;
    delete process.env.AGENTVM_NO_CACHE;
  });
  afterAll(() => {
    if (saved.xdg === undefined) delete process.env.XDG_CACHE_HOME;
    else process.env.XDG_CACHE_HOME = saved.xdg;
    if (saved.off !== undefined) process.env.AGENTVM_NO_CACHE = saved.off;
    rmSync(dir, { recursive: true, force: true });
  });
  const cached = (): string => {
    const file = join(dir, 'agentvm', 'documents.json');
    return existsSync(file) ? readFileSync(file, 'utf8') : '';
  };

  it.each([
    ['a JWT in an env value', `AGENT_SESSION: ${JWT}`, JWT],
    ['a literal under a secret-named env variable', 'API_TOKEN: changeme-please', 'changeme-please'],
    ['a JWT in a YAML comment', `AGENT_NOTE: ok # ${JWT}`, JWT],
  ])('%s', (_name, line, secret) => {
    stateOf(edit(BASELINE, MANIFEST, 'AGENT_PROFILE: core', `AGENT_PROFILE: core\n        ${line}`));
    expect(cached()).not.toContain(secret);
    // The same run cached the clean documents: the gate refuses only what holds a secret.
    expect(cached()).toContain('WorkloadContract');
  });
});
