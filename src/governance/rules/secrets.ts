// Secrets by reference only (every tier). Three sweeps: secret references must be well-formed references;
// env variables named like secrets must hold references; and every string of every document is scanned for
// values that look like keys or tokens, as is every other file for private key blocks.
// Invariant: no diagnostic here quotes a value — only the JSON path and the kind of secret it looks like.

import type { LoadedDocument } from '../../contracts/desired-state.js';
import { formatJsonPath, type JsonPath } from '../../contracts/yaml-document.js';
import { errorDiag, warningDiag, type Diagnostic } from '../../diagnostics/index.js';
import { at, lineOf, list, record, specOf, text, type PolicyRule, type WorkloadRule } from '../context.js';
import { DIGEST_FIELDS, findSecret, isSecretEnvName, isSecretEnvReference, parseSecretReference, privateKeyLine, secretScheme } from '../secret-detectors.js';
import { quote } from '../text-safety.js';

const REFERENCE_FORMS = '`file:/abs/path`, `systemd-creds:/abs/path`, `credstore:<name>`, `env-file:/abs/path#VAR` or `vault:<path>#<field>`';

const HOW_TO_FIX =
  'Remove the value from the repository (and rotate it: it is in git history now), store it on the host or in a vault, and refer to it: ' +
  `declare it under the contract's \`secrets\` as ${REFERENCE_FORMS}; the workload reads it from $CREDENTIALS_DIRECTORY/<name>.`;

/** Contract `secrets[].ref` and env variables named like secrets. */
export const secretReferenceRules: WorkloadRule = (ctx) => {
  const out: Diagnostic[] = [];
  const report = ctx.controls?.secretsByReference === false ? warningDiag : errorDiag;
  const contract = ctx.contract;
  if (contract) {
    const seen = new Map<string, number>();
    list(specOf(contract).secrets).forEach((raw, i) => {
      const secret = record(raw);
      const name = text(secret?.name);
      const shown = (): string => quote(name, `#${i + 1}`);
      if (name !== undefined) {
        const first = seen.get(name);
        if (first === undefined) seen.set(name, i);
        else {
          out.push(errorDiag('policy.secret-duplicate', `Secret ${shown()} is declared twice; both would be delivered under the same name in $CREDENTIALS_DIRECTORY.`, {
            detail: `The first declaration is at ${lineOf(contract, ['spec', 'secrets', first])}. Give each secret its own name.`,
            ...at(contract, ['spec', 'secrets', i, 'name']),
            address: ctx.address,
          }));
        }
      }
      const ref = text(secret?.ref);
      if (ref === undefined || parseSecretReference(ref)) return;
      const claimed = secretScheme(ref);
      out.push(report('policy.secret-literal',
        claimed
          ? `Secret ${shown()} has a malformed \`${claimed}:\` reference.`
          : `Secret ${shown()} holds a value, not a reference.`,
        {
          detail: claimed
            ? `A reference is exactly one of ${REFERENCE_FORMS}; host paths are absolute.`
            : HOW_TO_FIX,
          ...at(contract, ['spec', 'secrets', i, 'ref']),
          address: ctx.address,
        }));
    });
  }
  const manifest = ctx.manifest;
  if (manifest) {
    list(specOf(manifest).profiles).forEach((raw, i) => {
      const env = record(record(raw)?.env);
      if (!env) return;
      for (const key in env) {
        const value = env[key];
        if (!isSecretEnvName(key) || typeof value !== 'string' || isSecretEnvReference(value)) continue;
        out.push(report('policy.secret-literal', `Env variable ${key} of profile #${i + 1} is named like a secret and holds a literal value.`, {
          detail: `${HOW_TO_FIX} Point the variable at the credential instead: \`${key}: \${CREDENTIALS_DIRECTORY}/<name>\` (or drop it and let the workload read the file).`,
          ...at(manifest, ['spec', 'profiles', i, 'env', key]),
          address: ctx.address,
        }));
      }
    });
  }
  return out;
};

/** Host TLS keys are secrets too: by reference only. */
export const hostSecretRules: PolicyRule = ({ state }) => {
  const out: Diagnostic[] = [];
  for (const host of state.hosts.values()) {
    const key = text(record(record(specOf(host).gate)?.tls)?.key);
    if (key === undefined || parseSecretReference(key)) continue;
    out.push(errorDiag('policy.secret-literal', 'The gate TLS private key is given as a value, not a reference.', {
      detail: 'Remove the key from the repository and rotate it (it is in git history now); store it on the host and refer to it as `file:/abs/path` or `systemd-creds:/abs/path`.',
      ...at(host, ['spec', 'gate', 'tls', 'key']),
    }));
  }
  return out;
};

/** Every string of every document, and every non-YAML file, scanned for secret-looking values. */
export const secretScanRules: PolicyRule = ({ state }) => {
  const out: Diagnostic[] = [];
  if (state.config) scanDocument(state.config, undefined, out);
  for (const host of state.hosts.values()) scanDocument(host, undefined, out);
  for (const def of state.workloads.values()) {
    const address = `workload.${def.name}`;
    if (def.contract) scanDocument(def.contract, address, out);
    if (def.manifest) scanDocument(def.manifest, address, out);
    for (const [rel, body] of def.files) scanFile(`${def.dir}/${rel}`, body, address, out);
  }
  for (const doc of state.rejected ?? []) scanDocument(doc, undefined, out);
  for (const [path, body] of state.files) scanFile(path, body, undefined, out);
  return out;
};

function scanDocument(doc: LoadedDocument<unknown>, address: string | undefined, out: Diagnostic[]): void {
  const path: Array<string | number> = [];
  const visit = (node: unknown, field: string | undefined): void => {
    if (typeof node === 'string') {
      const found = findSecret(node, { digestField: field !== undefined && DIGEST_FIELDS.has(field) });
      if (found) out.push(literal(doc, [...path], found.label, address));
      return;
    }
    if (Array.isArray(node)) {
      for (let i = 0; i < node.length; i++) {
        path.push(i);
        visit(node[i], field);
        path.pop();
      }
      return;
    }
    if (node !== null && typeof node === 'object') {
      const obj = node as Record<string, unknown>;
      for (const k in obj) {
        path.push(k);
        visit(obj[k], k);
        path.pop();
      }
    }
  };
  visit(doc.value, undefined);
}

function literal(doc: LoadedDocument<unknown>, path: JsonPath, label: string, address: string | undefined): Diagnostic {
  return errorDiag('policy.secret-literal', `${formatJsonPath(path)} holds what looks like ${label}.`, {
    detail: `${HOW_TO_FIX} If it is not a secret, rewrite it so it does not look like one (e.g. move long random identifiers to a file in the release).`,
    ...at(doc, path),
    ...(address ? { address } : {}),
  });
}

function scanFile(file: string, body: string, address: string | undefined, out: Diagnostic[]): void {
  const line = privateKeyLine(body);
  if (line === undefined) return;
  out.push(errorDiag('policy.secret-literal', `${file} contains a private key block.`, {
    detail: 'Private keys never belong in the desired-state repository: delete the file, rotate the key (it is in git history now), and commit only the public key (e.g. `cosign public-key`, `openssl pkey -pubout`).',
    location: { file, line, column: 1 },
    ...(address ? { address } : {}),
  }));
}
