// Signed, digest-pinned releases (control `signedRelease`, `moderate` and up): the manifest names a Sigstore
// bundle and exactly one signer policy — keyless (identity AND issuer) or a public key — and the files it names
// sit in the workload directory. A signature that is present is checked at every tier: a half-written signer
// policy is never what was meant. Job images (kernel, rootfs) are digest-pinned by the schema itself.

import { errorDiag, type Diagnostic } from '../../diagnostics/index.js';
import { at, record, specOf, text, type WorkloadRule } from '../context.js';
import { describePathProblem, quote, relativePathProblem, safeText } from '../text-safety.js';

export const signatureRules: WorkloadRule = (ctx) => {
  const doc = ctx.manifest;
  if (!doc) return [];
  const out: Diagnostic[] = [];
  const sig = record(specOf(doc).signature);
  const required = ctx.controls?.signedRelease === true;

  if (!sig) {
    if (required) {
      out.push(errorDiag('policy.unsigned-release', `Workload \`${ctx.name}\` is \`${ctx.tier}\` and its release is not signed.`, {
        detail: 'Add `signature:` to the manifest with `bundle: <file>.sigstore.json` (in the workload directory) and either `identity:` + `issuer:` of the keyless signer or `key: <public key file>`. Create the bundle with `cosign sign-blob --bundle …` over the release artifact.',
        ...at(doc, ['spec', 'signature']),
        address: ctx.address,
      }));
    }
    return out;
  }

  const identity = text(sig.identity);
  const issuer = text(sig.issuer);
  const key = text(sig.key);
  if (key !== undefined && (identity !== undefined || issuer !== undefined)) {
    out.push(errorDiag('policy.signature-policy', 'The signature names both a key and a keyless identity/issuer; a signer is one or the other.', {
      detail: 'Keep `identity` + `issuer` for a keyless (Fulcio certificate) signature, or `key` for a key-signed bundle, not both.',
      ...at(doc, ['spec', 'signature', 'key'], { key: true }),
      address: ctx.address,
    }));
  } else if (key === undefined && (identity === undefined) !== (issuer === undefined)) {
    const missing = identity === undefined ? 'identity' : 'issuer';
    out.push(errorDiag('policy.signature-policy', `The keyless signature policy has ${missing === 'issuer' ? 'an identity but no issuer' : 'an issuer but no identity'}.`, {
      detail: 'A keyless signer is pinned by both the exact certificate identity (e.g. the workflow URL) and the exact OIDC issuer (e.g. `https://token.actions.githubusercontent.com`). Add the missing one.',
      ...at(doc, ['spec', 'signature', missing === 'issuer' ? 'identity' : 'issuer'], { key: true }),
      address: ctx.address,
    }));
  } else if (key === undefined && identity === undefined && required) {
    out.push(errorDiag('policy.unsigned-release', 'The signature names no signer: neither `identity` + `issuer` nor `key`, so nothing could be trusted.', {
      detail: 'Add `identity:` and `issuer:` of the keyless signer, or `key: <public key file in the workload directory>`.',
      ...at(doc, ['spec', 'signature']),
      address: ctx.address,
    }));
  }

  for (const field of ['bundle', 'key'] as const) {
    const file = text(sig[field]);
    if (file === undefined) continue;
    const problem = relativePathProblem(file);
    if (problem) {
      out.push(errorDiag('name.path-traversal', `signature.${field} ${describePathProblem(problem)}; it must name a file inside the workload directory.`, {
        detail: `Put the file next to manifest.yaml in ${ctx.def.dir}/ and give its name relative to that directory (e.g. \`${field === 'bundle' ? 'release.sigstore.json' : 'release-signing.pub.pem'}\`).`,
        ...at(doc, ['spec', 'signature', field]),
        address: ctx.address,
      }));
      continue;
    }
    const rel = file.replace(/^(?:\.\/)+/, '');
    if (!ctx.def.files.has(rel)) {
      out.push(errorDiag('policy.signature-file-missing', `The signature ${field} ${quote(file, 'file')} is not in ${ctx.def.dir}/ at this commit.`, {
        detail: `Commit the ${field === 'bundle' ? 'Sigstore bundle' : 'PEM public key'} as ${ctx.def.dir}/${safeText(rel) ?? '<file>'}, or correct \`signature.${field}\`.`,
        ...at(doc, ['spec', 'signature', field]),
        address: ctx.address,
      }));
    }
  }
  return out;
};
