// Signed plans (issue 21): `agentvm plan --out plan.json --sign <key.pem>` signs the plan file's exact bytes into a
// Sigstore bundle next to it (`plan.json.sigstore.json`, the same message-signature bundle scripts/sign-local.js makes
// for releases), and `agentvm apply plan.json --require-signed-plan --plan-key <key.pub>` verifies it with the same
// Sigstore verification as releases (verifyArtifact, key policy) before anything else — so a host applies only plans
// its pipeline produced. An unsigned plan, a plan edited after signing, and a plan re-signed with any other key are
// refused (`apply.plan-unsigned`, `apply.plan-signature`).
// Invariants: the signature covers the file's bytes; the plan apply uses must be exactly what those bytes say (checked
// by canonical JSON, so swapping the file between the two reads changes nothing); the private key is never printed.

import { createHash, createPrivateKey, createPublicKey, createSign, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { bundleToJSON, toMessageSignatureBundle } from '@sigstore/bundle';
import { AgentvmError, userError } from '../diagnostics/index.js';
import type { Plan } from '../engine/plan.js';
import { publicKeyHint, verifyArtifact } from '../providers/image/index.js';
import { canonicalJson } from '../state/audit-log.js';
import { writeFileAtomic } from '../state/index.js';

/** Where a plan file's signature bundle lives. */
export function planBundlePath(planFile: string): string {
  return `${planFile}.sigstore.json`;
}

/** Signs the plan file (as written) with an ECDSA P-256 private key; returns the bundle's path. */
export function signPlanFile(planFile: string, keyFile: string): string {
  const key = readPrivateKey(keyFile);
  const bytes = readFileSync(planFile);
  const signer = createSign('sha256');
  signer.update(bytes);
  const bundle = toMessageSignatureBundle({
    digest: createHash('sha256').update(bytes).digest(),
    signature: signer.sign(key),
    keyHint: publicKeyHint(createPublicKey(key)),
  });
  const out = planBundlePath(planFile);
  writeFileAtomic(out, `${JSON.stringify(bundleToJSON(bundle), null, 2)}\n`);
  return out;
}

/**
 * Verifies the signature of `planFile` against the public key in `keyFile`, and that `plan` (what apply parsed) is what
 * the signed bytes say. Throws `apply.plan-unsigned` (no bundle) or `apply.plan-signature` (anything else wrong).
 */
export async function verifyPlanSignature(planFile: string, plan: Plan, keyFile: string): Promise<{ keyHint: string }> {
  let publicKeyPem: string;
  try {
    publicKeyPem = readFileSync(keyFile, 'utf8');
  } catch (err) {
    throw userError(
      'apply.plan-key-unreadable',
      `Cannot read the plan signing key ${keyFile} (${(err as NodeJS.ErrnoException).code ?? 'error'}).`,
      'Pass --plan-key the PEM public key of the pipeline that signs plans (signing.pub.pem from `node scripts/sign-local.js keygen`).',
    );
  }
  const bundleFile = planBundlePath(planFile);
  let bundle: string;
  try {
    bundle = readFileSync(bundleFile, 'utf8');
  } catch {
    throw userError(
      'apply.plan-unsigned',
      `The plan ${planFile} is not signed: there is no ${bundleFile}, and --require-signed-plan is set.`,
      'Apply only plans your pipeline signed: make it with `agentvm plan --out <file> --sign <private key>` and copy the .sigstore.json with the plan. Nothing was applied.',
    );
  }
  const bytes = readFileSync(planFile);
  const res = await verifyArtifact({
    bundle,
    artifactSha256: createHash('sha256').update(bytes).digest('hex'),
    artifact: bytes,
    policy: { kind: 'key', publicKeyPem },
    thresholds: { ctlog: 0, tlog: 0, tsa: 0 },
  });
  if (!res.ok) {
    const why = res.diagnostics[0];
    throw new AgentvmError(
      'apply.plan-signature',
      `The signature of the plan ${planFile} does not verify with the key ${keyFile}: ${why?.summary ?? 'refused'}`,
      {
        detail:
          'The plan was changed after it was signed, or signed by another key. Nothing was applied. Apply only a plan signed by your pipeline, unchanged.',
        ...(why ? { diagnostics: [why] } : {}),
      },
    );
  }
  let signed: unknown;
  try {
    signed = JSON.parse(bytes.toString('utf8'));
  } catch {
    signed = undefined;
  }
  if (canonicalJson(signed) !== canonicalJson(plan)) {
    throw new AgentvmError(
      'apply.plan-signature',
      `The plan ${planFile} changed while it was being read: the signed bytes are not the plan that was parsed.`,
      { detail: 'Nothing was applied. Make sure nothing writes the plan file during apply.' },
    );
  }
  return { keyHint: res.signer?.keyHint ?? '' };
}

function readPrivateKey(keyFile: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPrivateKey(readFileSync(keyFile));
  } catch (err) {
    // The key's bytes are a secret: never quote them, only say what the file is not.
    throw userError(
      'plan.sign-key-invalid',
      `${keyFile} is not a readable PEM private key (${(err as NodeJS.ErrnoException).code ?? 'not PEM'}).`,
      'Pass --sign the private key of an ECDSA P-256 key pair (`node scripts/sign-local.js keygen <dir>` makes one).',
    );
  }
  if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    throw userError(
      'plan.sign-key-invalid',
      `${keyFile} is not an ECDSA P-256 private key.`,
      'Make one with `node scripts/sign-local.js keygen <dir>`.',
    );
  }
  return key;
}
