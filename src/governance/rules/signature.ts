// Signed, digest-pinned releases (control `signedRelease`, `moderate` and up): the manifest names a Sigstore
// bundle and exactly one signer policy — keyless (identity AND issuer) or a public key — and the files it names
// sit in the workload directory. A signature that is present is checked at every tier: a half-written signer
// policy is never what was meant. Job images (kernel, rootfs) are digest-pinned by the schema itself; under the same
// control each also names its own Sigstore bundle (`bundle`, in the workload directory), signed by the manifest's
// signer — the image bytes are verified against it at plan, apply and before every boot (app/signatures.ts).

import type { JsonPath } from '../../contracts/yaml-document.js';
import { errorDiag, type Diagnostic } from '../../diagnostics/index.js';
import { at, list, record, specOf, text, type WorkloadContext, type WorkloadRule } from '../context.js';
import { describePathProblem, quote, relativePathProblem, safeText } from '../../secrets/text-safety.js';

export const signatureRules: WorkloadRule = (ctx) => {
  const doc = ctx.manifest;
  if (!doc) return [];
  const out: Diagnostic[] = [];
  const sig = record(specOf(doc).signature);
  const required = ctx.controls?.signedRelease === true;
  out.push(...imageSignatureRules(ctx, required, sig !== undefined));

  if (!sig) {
    if (required) {
      out.push(
        errorDiag(
          'policy.unsigned-release',
          `Workload \`${ctx.name}\` is \`${ctx.tier}\` and its release is not signed.`,
          {
            detail:
              'Add `signature:` to the manifest with `bundle: <file>.sigstore.json` (in the workload directory) and either `identity:` + `issuer:` of the keyless signer or `key: <public key file>`. Create the bundle with `cosign sign-blob --bundle …` over the release artifact.',
            ...at(doc, ['spec', 'signature']),
            address: ctx.address,
          },
        ),
      );
    }
    return out;
  }

  const identity = text(sig.identity);
  const issuer = text(sig.issuer);
  const key = text(sig.key);
  if (key !== undefined && (identity !== undefined || issuer !== undefined)) {
    out.push(
      errorDiag(
        'policy.signature-policy',
        'The signature names both a key and a keyless identity/issuer; a signer is one or the other.',
        {
          detail:
            'Keep `identity` + `issuer` for a keyless (Fulcio certificate) signature, or `key` for a key-signed bundle, not both.',
          ...at(doc, ['spec', 'signature', 'key'], { key: true }),
          address: ctx.address,
        },
      ),
    );
  } else if (key === undefined && (identity === undefined) !== (issuer === undefined)) {
    const missing = identity === undefined ? 'identity' : 'issuer';
    out.push(
      errorDiag(
        'policy.signature-policy',
        `The keyless signature policy has ${missing === 'issuer' ? 'an identity but no issuer' : 'an issuer but no identity'}.`,
        {
          detail:
            'A keyless signer is pinned by both the exact certificate identity (e.g. the workflow URL) and the exact OIDC issuer (e.g. `https://token.actions.githubusercontent.com`). Add the missing one.',
          ...at(doc, ['spec', 'signature', missing === 'issuer' ? 'identity' : 'issuer'], { key: true }),
          address: ctx.address,
        },
      ),
    );
  } else if (key === undefined && identity === undefined && required) {
    out.push(
      errorDiag(
        'policy.unsigned-release',
        'The signature names no signer: neither `identity` + `issuer` nor `key`, so nothing could be trusted.',
        {
          detail:
            'Add `identity:` and `issuer:` of the keyless signer, or `key: <public key file in the workload directory>`.',
          ...at(doc, ['spec', 'signature']),
          address: ctx.address,
        },
      ),
    );
  }

  for (const field of ['bundle', 'key'] as const) {
    const file = text(sig[field]);
    if (file === undefined) continue;
    out.push(
      ...workloadFileRules(
        ctx,
        file,
        ['spec', 'signature', field],
        `signature.${field}`,
        field === 'bundle' ? 'release.sigstore.json' : 'release-signing.pub.pem',
        field === 'bundle' ? 'Sigstore bundle' : 'PEM public key',
      ),
    );
  }
  return out;
};

/**
 * Job images under `signedRelease`: each of a job's kernel and rootfs names a bundle (`policy.unsigned-image`, at the
 * image). A bundle that is named is checked at every tier: it must sit in the workload directory, and the manifest
 * must say who signs (its `signature`), or nothing could verify it.
 */
function imageSignatureRules(ctx: WorkloadContext, required: boolean, hasSigner: boolean): Diagnostic[] {
  const doc = ctx.manifest!;
  const out: Diagnostic[] = [];
  list(specOf(doc).jobs).forEach((raw, i) => {
    const job = record(raw);
    for (const image of ['kernel', 'rootfs', 'initramfs'] as const) {
      const spec = record(job?.[image]);
      if (!spec) continue;
      const bundle = text(spec.bundle);
      const name = safeText(job?.name) ?? `#${i + 1}`;
      if (bundle === undefined) {
        if (required) {
          out.push(
            errorDiag(
              'policy.unsigned-image',
              `Workload \`${ctx.name}\` is \`${ctx.tier}\` and the ${image} image of job \`${name}\` is not signed.`,
              {
                detail: `Add \`bundle: <file>.sigstore.json\` to the ${image} (a Sigstore bundle over the image file, committed in ${ctx.def.dir}/), signed by the manifest's \`signature\` signer: \`node scripts/sign-local.js sign --key <private key> <image file>\` for a key, or \`cosign sign-blob --bundle …\` keyless.`,
                ...at(doc, ['spec', 'jobs', i, image], { key: true }),
                address: ctx.address,
              },
            ),
          );
        }
        continue;
      }
      if (!hasSigner) {
        out.push(
          errorDiag(
            'policy.signature-policy',
            `The ${image} image of job \`${name}\` names a signature bundle, but the manifest has no \`signature\` saying who must have signed it.`,
            {
              detail:
                "Image bundles are verified against the manifest's signer: add `signature:` with `identity:` + `issuer:` (keyless) or `key:`, or remove the image's `bundle`.",
              ...at(doc, ['spec', 'jobs', i, image, 'bundle'], { key: true }),
              address: ctx.address,
            },
          ),
        );
      }
      out.push(
        ...workloadFileRules(
          ctx,
          bundle,
          ['spec', 'jobs', i, image, 'bundle'],
          `jobs[${i}].${image}.bundle`,
          `${image}.sigstore.json`,
          'Sigstore bundle',
        ),
      );
    }
  });
  return out;
}

/** A file the manifest names relative to the workload directory: inside it (no traversal) and committed there. */
function workloadFileRules(
  ctx: WorkloadContext,
  file: string,
  path: JsonPath,
  field: string,
  example: string,
  what: string,
): Diagnostic[] {
  const doc = ctx.manifest!;
  const problem = relativePathProblem(file);
  if (problem) {
    return [
      errorDiag(
        'name.path-traversal',
        `${field} ${describePathProblem(problem)}; it must name a file inside the workload directory.`,
        {
          detail: `Put the file next to manifest.yaml in ${ctx.def.dir}/ and give its name relative to that directory (e.g. \`${example}\`).`,
          ...at(doc, path),
          address: ctx.address,
        },
      ),
    ];
  }
  const rel = file.replace(/^(?:\.\/)+/, '');
  if (ctx.def.files.has(rel)) return [];
  return [
    errorDiag(
      'policy.signature-file-missing',
      `The ${field.startsWith('signature.') ? `signature ${field.slice('signature.'.length)}` : field} ${quote(file, 'file')} is not in ${ctx.def.dir}/ at this commit.`,
      {
        detail: `Commit the ${what} as ${ctx.def.dir}/${safeText(rel) ?? '<file>'}, or correct \`${field}\`.`,
        ...at(doc, path),
        address: ctx.address,
      },
    ),
  ];
}
