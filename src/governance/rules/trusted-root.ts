// The custom Sigstore trusted root named by agentvm.yaml: a repository file under trust/, pinned by sha256.
// A path that leaves trust/ could make agentvm trust a file it never reviewed.

import { createHash } from 'node:crypto';
import { errorDiag, type Diagnostic } from '../../diagnostics/index.js';
import type { PolicyRule } from '../context.js';

export const trustedRootRules: PolicyRule = ({ state }) => {
  const out: Diagnostic[] = [];
  const doc = state.config;
  const root = doc?.value.spec?.trustedRoot;
  if (!doc || !root) return out;
  const file = root.file;
  const at = { path: '$.spec.trustedRoot.file', location: doc.locate(['spec', 'trustedRoot', 'file']) };
  const segments = file.split('/');
  if (
    !file.startsWith('trust/') ||
    file.startsWith('/') ||
    segments.some((s) => s === '..' || s === '.' || s === '') ||
    /[\\\0\r\n]/.test(file)
  ) {
    out.push(
      errorDiag('name.path-traversal', 'spec.trustedRoot.file must name a file under trust/ in this repository.', {
        detail:
          'Commit the trusted root as trust/<name>.json and name it here (no `..`, no absolute paths): agentvm reads it from the same commit as everything else.',
        ...at,
      }),
    );
    return out;
  }
  const body = state.files.get(file);
  if (body === undefined) {
    out.push(
      errorDiag('policy.trusted-root-missing', `The trusted root ${file} is not in the repository at this commit.`, {
        detail: `Commit ${file}, or correct spec.trustedRoot.file.`,
        ...at,
      }),
    );
    return out;
  }
  const digest = createHash('sha256').update(body, 'utf8').digest('hex');
  if (digest !== root.sha256) {
    out.push(
      errorDiag('policy.trusted-root-pin', `The trusted root ${file} does not match its pinned sha256.`, {
        detail: `Its sha256 is ${digest}. If the new root was reviewed, update spec.trustedRoot.sha256; otherwise restore the pinned file.`,
        path: '$.spec.trustedRoot.sha256',
        location: doc.locate(['spec', 'trustedRoot', 'sha256']),
      }),
    );
  }
  return out;
};
