// Issue 18, item 4: the document cache stored every document that passed its schema, before the secret scan — a
// JWT refused by validate was on disk in ~/.cache/agentvm/documents.json afterwards. Now a document is cached only
// when the secret checks find nothing in it; a clean document is still cached (the cache keeps working).

import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { scratchCache } from './scratch-cache.fixture.js';
import { BASELINE, edit, stateOf } from '../governance/policy.fixture.js';

const JWT = [
  'eyJhbGciOiJIUzI1NiJ9',
  'eyJzdWIiOiJjYWNoZS10ZXN0IiwiaWF0IjoxNzAwMDAwMDAwfQ',
  'c2lnbmF0dXJlLW5vdC1yZWFsLWNhY2hl',
].join('.');
const MANIFEST = 'workloads/web/manifest.yaml';

describe('the document cache never stores a document the secret scan refuses', () => {
  const dir = scratchCache('agentvm-cache-secrets-');
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
