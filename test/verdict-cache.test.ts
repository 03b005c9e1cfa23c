// Remembered signature verdicts (ADR 0010): plan reuses a success only for exactly the same inputs. Unit tests of
// the cache file and the key, then the real CLI: with a warm cache, a tampered bundle is still refused by plan.

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { VERDICT_CACHE_FILE, VerdictCache, verdictKey, type VerdictInputs } from '../src/app/verdict-cache.js';
import { agentvm, assertBuilt } from './support/cli.js';
import { fleetCopy, type FleetCopy } from './support/fleet.js';

const INPUTS: VerdictInputs = {
  artifactSha256: 'a'.repeat(64),
  bundle: '{"b":1}',
  policy: '{"kind":"key"}',
  trustedRoot: 'root',
  thresholds: 'null',
};

describe('the verdict cache', () => {
  let dir = '';
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'agentvm-verdicts-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('keys on every input: changing any one of them is another key', () => {
    const key = verdictKey(INPUTS);
    expect(key).toMatch(/^[0-9a-f]{64}$/);
    expect(verdictKey({ ...INPUTS })).toBe(key);
    for (const field of Object.keys(INPUTS) as Array<keyof VerdictInputs>) {
      expect(verdictKey({ ...INPUTS, [field]: `${INPUTS[field]}x` }), field).not.toBe(key);
    }
  });

  it('remembers across instances through the file, and treats a malformed file as empty', () => {
    const cacheDir = join(dir, 'a', 'nested');
    const first = new VerdictCache(cacheDir);
    expect(first.size).toBe(0);
    first.remember(verdictKey(INPUTS), { digest: 'sha256:abc', signer: { keyHint: 'k' }, diagnostics: [] });
    first.save();
    const second = new VerdictCache(cacheDir);
    expect(second.get(verdictKey(INPUTS))).toEqual({ digest: 'sha256:abc', signer: { keyHint: 'k' }, diagnostics: [] });
    expect(second.get(verdictKey({ ...INPUTS, bundle: 'other' }))).toBeUndefined();

    writeFileSync(join(cacheDir, VERDICT_CACHE_FILE), '{ not json');
    expect(new VerdictCache(cacheDir).size).toBe(0);
    writeFileSync(
      join(cacheDir, VERDICT_CACHE_FILE),
      JSON.stringify({ format: 99, verdicts: { [verdictKey(INPUTS)]: { digest: 'x', diagnostics: [] } } }),
    );
    expect(new VerdictCache(cacheDir).size).toBe(0);
  });

  it('keeps at most 1,024 verdicts, dropping the oldest', () => {
    const cache = new VerdictCache(join(dir, 'cap'));
    for (let i = 0; i < 1030; i++)
      cache.remember(verdictKey({ ...INPUTS, artifactSha256: String(i) }), { digest: `sha256:${i}`, diagnostics: [] });
    expect(cache.size).toBe(1024);
    expect(cache.get(verdictKey({ ...INPUTS, artifactSha256: '0' }))).toBeUndefined();
    expect(cache.get(verdictKey({ ...INPUTS, artifactSha256: '1029' }))?.digest).toBe('sha256:1029');
  });
});

describe('plan with remembered verdicts (real CLI)', () => {
  let fleet: FleetCopy;
  beforeAll(() => {
    assertBuilt();
    fleet = fleetCopy();
  });
  afterAll(() => fleet?.cleanup());

  it('GIVEN a warm cache WHEN the release bundle is tampered with THEN plan verifies again and refuses it', async () => {
    const args = ['plan', '--repo', fleet.repo, '--host', 'edge-1', '--root', fleet.root, '--json'];
    const clean = await agentvm(args);
    expect(clean.code, clean.stderr).toBe(0);
    const cached = JSON.parse(readFileSync(join(fleet.root, 'var/cache/agentvm', VERDICT_CACHE_FILE), 'utf8')) as {
      verdicts: Record<string, unknown>;
    };
    expect(Object.keys(cached.verdicts).length).toBeGreaterThan(0);

    // One bit of the signature flipped: the bundle's text changes, so no remembered verdict applies.
    const bundleFile = join(fleet.repo, 'workloads/research-orchestrator/release.sigstore.json');
    const bundle = JSON.parse(readFileSync(bundleFile, 'utf8')) as { messageSignature: { signature: string } };
    const sig = Buffer.from(bundle.messageSignature.signature, 'base64');
    sig[sig.length - 1] = sig[sig.length - 1]! ^ 1;
    bundle.messageSignature.signature = sig.toString('base64');
    writeFileSync(bundleFile, JSON.stringify(bundle, null, 2));
    fleet.git('commit', '-qam', 'tampered bundle');

    const tampered = await agentvm(args);
    expect(tampered.code).toBe(1);
    const p = JSON.parse(tampered.stdout) as {
      diagnostics: Array<{ code: string; address?: string }>;
      applicable: boolean;
    };
    expect(
      p.diagnostics.filter((d) => d.address === 'release.research-orchestrator' && d.code.startsWith('signature.'))
        .length,
    ).toBe(1);
    expect(p.applicable).toBe(false);
  });
});
