// scripts/sign-local.js end to end: real `node` processes make a fresh key pair and sign a temporary file,
// and verifyArtifact accepts the bundle under a key policy with zero thresholds (the bundle has no tlog entry,
// certificate or timestamp by design), and refuses it for the file changed by one byte.

import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyArtifact } from './verify.js';

const run = promisify(execFile);
const SCRIPT = fileURLToPath(new URL('../../../scripts/sign-local.js', import.meta.url));

describe('scripts/sign-local.js', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'agentvm-sign-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('GIVEN a fresh key and a signed file WHEN verified with the public key THEN it passes; one changed byte is refused', async () => {
    const keys = join(dir, 'keys');
    await run(process.execPath, [SCRIPT, 'keygen', keys]);
    expect((await stat(join(keys, 'signing.key.pem'))).mode & 0o077).toBe(0); // the private key is readable by its owner only

    const artifact = join(dir, 'rootfs.img');
    const bytes = Buffer.alloc(3 * 1024 * 1024 + 7, 0x5a); // spans several read chunks
    await writeFile(artifact, bytes);
    const { stdout } = await run(process.execPath, [SCRIPT, 'sign', '--key', join(keys, 'signing.key.pem'), artifact], {
      maxBuffer: 1 << 20,
    });
    const bundle = JSON.parse(stdout) as { mediaType: string; verificationMaterial: { publicKey: { hint: string } } };
    expect(bundle.mediaType).toBe('application/vnd.dev.sigstore.bundle.v0.3+json');

    const publicKeyPem = await readFile(join(keys, 'signing.pub.pem'), 'utf8');
    const pinned = createHash('sha256').update(bytes).digest('hex');
    const request = {
      bundle,
      artifactSha256: pinned,
      artifact: bytes,
      policy: { kind: 'key' as const, publicKeyPem },
      thresholds: { tlog: 0, ctlog: 0, tsa: 0 },
    };
    const res = await verifyArtifact(request);
    expect(res).toEqual({
      ok: true,
      signer: { keyHint: bundle.verificationMaterial.publicKey.hint },
      digest: pinned,
      diagnostics: [],
    });

    const tampered = Buffer.from(bytes);
    tampered[1_000_000] = 0x5b;
    const refused = await verifyArtifact({ ...request, artifact: tampered });
    expect(refused.ok).toBe(false);
    expect(refused.diagnostics.map((d) => d.code)).toEqual(['signature.digest-mismatch']);
  });

  it('refuses to overwrite an existing key, and exits 2 on bad usage', async () => {
    const keys = join(dir, 'again');
    await run(process.execPath, [SCRIPT, 'keygen', keys]);
    await expect(run(process.execPath, [SCRIPT, 'keygen', keys])).rejects.toMatchObject({ code: 1 });
    await expect(run(process.execPath, [SCRIPT, 'sign', join(dir, 'nothing')])).rejects.toMatchObject({ code: 2 });
  });
});
