// Secrets by reference only (every tier). Three sweeps: secret references must be well-formed references;
// env variables named like secrets must hold references; and every string of every document is scanned for
// values that look like keys or tokens, as is every other file for private key blocks.
// Invariant: no diagnostic here quotes a value — only the JSON path and the kind of secret it looks like.

import type { LoadedDocument } from '../../contracts/desired-state.js';
import { formatJsonPath, type JsonPath } from '../../contracts/yaml-document.js';
import { errorDiag, warningDiag, type Diagnostic } from '../../diagnostics/index.js';
import { at, lineOf, list, record, specOf, text, type PolicyRule, type WorkloadRule } from '../context.js';
import { rememberSecret } from '../../secrets/redaction.js';
import { forEachComment } from '../../secrets/secret-scan.js';
import {
  DIGEST_FIELDS,
  findSecretSpans,
  isSecretEnvName,
  isSecretEnvReference,
  lineAt,
  parseSecretReference,
  privateKeyLine,
  secretScheme,
  type FindOptions,
  type SecretFinding,
} from '../../secrets/secret-detectors.js';
import { quote } from '../../secrets/text-safety.js';
import { openScanMemo } from '../scan-memo.js';

const REFERENCE_FORMS =
  '`file:/abs/path`, `systemd-creds:/abs/path`, `credstore:<name>`, `env-file:/abs/path#VAR` or `vault:<path>#<field>`';

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
          out.push(
            errorDiag(
              'policy.secret-duplicate',
              `Secret ${shown()} is declared twice; both would be delivered under the same name in $CREDENTIALS_DIRECTORY.`,
              {
                detail: `The first declaration is at ${lineOf(contract, ['spec', 'secrets', first])}. Give each secret its own name.`,
                ...at(contract, ['spec', 'secrets', i, 'name']),
                address: ctx.address,
              },
            ),
          );
        }
      }
      const ref = text(secret?.ref);
      if (ref === undefined || parseSecretReference(ref)) return;
      const claimed = secretScheme(ref);
      rememberSecret(ref);
      out.push(
        report(
          'policy.secret-literal',
          claimed
            ? `Secret ${shown()} has a malformed \`${claimed}:\` reference.`
            : `Secret ${shown()} holds a value, not a reference.`,
          {
            detail: claimed ? `A reference is exactly one of ${REFERENCE_FORMS}; host paths are absolute.` : HOW_TO_FIX,
            ...at(contract, ['spec', 'secrets', i, 'ref']),
            address: ctx.address,
          },
        ),
      );
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
        rememberSecret(value);
        out.push(
          report(
            'policy.secret-literal',
            `Env variable ${key} of profile #${i + 1} is named like a secret and holds a literal value.`,
            {
              detail: `${HOW_TO_FIX} Point the variable at the credential instead: \`${key}: \${CREDENTIALS_DIRECTORY}/<name>\` (or drop it and let the workload read the file).`,
              ...at(manifest, ['spec', 'profiles', i, 'env', key]),
              address: ctx.address,
            },
          ),
        );
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
    rememberSecret(key);
    out.push(
      errorDiag('policy.secret-literal', 'The gate TLS private key is given as a value, not a reference.', {
        detail:
          'Remove the key from the repository and rotate it (it is in git history now); store it on the host and refer to it as `file:/abs/path` or `systemd-creds:/abs/path`.',
        ...at(host, ['spec', 'gate', 'tls', 'key']),
      }),
    );
  }
  return out;
};

/** Every string and key of every document, every YAML comment, and every other file, scanned for secrets. */
export const secretScanRules: PolicyRule = ({ state }) => {
  const out: Diagnostic[] = [];
  // Documents whose text a previous scan found clean are skipped, value and source alike (scan-memo.ts); a document
  // scanned now is remembered when neither its values nor its text held anything.
  const memo = openScanMemo();
  const skipped = new Set<string>();
  const cleanValues = new Set<string>();
  const document = (doc: LoadedDocument<unknown>, address: string | undefined): void => {
    const text = state.sources?.get(doc.file);
    if (text !== undefined && memo.clean(text)) {
      skipped.add(doc.file);
      return;
    }
    const before = out.length;
    scanDocument(doc, address, out);
    if (out.length === before) cleanValues.add(doc.file);
  };
  if (state.config) document(state.config, undefined);
  for (const host of state.hosts.values()) document(host, undefined);
  for (const def of state.workloads.values()) {
    const address = `workload.${def.name}`;
    if (def.contract) document(def.contract, address);
    if (def.manifest) document(def.manifest, address);
    for (const [rel, body] of def.files) scanFile(`${def.dir}/${rel}`, body, address, out);
  }
  // Rejected documents are scanned every time (their value is partial; nothing about them is remembered).
  for (const doc of state.rejected ?? []) {
    cleanValues.delete(doc.file);
    skipped.delete(doc.file);
    scanDocument(doc, undefined, out);
  }
  for (const [path, body] of state.files) scanFile(path, body, undefined, out);
  for (const [path, body] of state.sources ?? []) {
    if (skipped.has(path)) continue;
    const found = scanSource(path, body, out);
    if (!found && cleanValues.has(path)) memo.add(body);
  }
  memo.save();
  return out;
};

/** Every string value (with the name of the field it sits under, for context) and every key. */
function scanDocument(doc: LoadedDocument<unknown>, address: string | undefined, out: Diagnostic[]): void {
  const path: Array<string | number> = [];
  const visit = (node: unknown, field: string | undefined): void => {
    if (typeof node === 'string') {
      const finding = scanString(node, {
        digestField: field !== undefined && DIGEST_FIELDS.has(field),
        ...(field !== undefined ? { field } : {}),
      });
      if (finding) out.push(literal(doc, [...path], finding.label, address));
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
        const keyFinding = scanString(k, {});
        if (keyFinding) out.push(literal(doc, [...path], keyFinding.label, address, true));
        visit(obj[k], k);
        path.pop();
      }
    }
  };
  visit(doc.value, undefined);
}

/** The first finding in `value`, after remembering every flagged span for the redaction boundary. */
function scanString(value: string, opts: FindOptions): SecretFinding | undefined {
  const spans = findSecretSpans(value, opts);
  if (spans.length === 0) return undefined;
  rememberSecret(value);
  for (const s of spans) rememberSecret(value.slice(s.start, s.end));
  return spans.find((s) => s.kind !== 'high-entropy' && s.kind !== 'high-entropy-hex') ?? spans[0];
}

function literal(
  doc: LoadedDocument<unknown>,
  path: JsonPath,
  label: string,
  address: string | undefined,
  key = false,
): Diagnostic {
  return errorDiag(
    'policy.secret-literal',
    `${key ? `A key at ${formatJsonPath(path.slice(0, -1))}` : formatJsonPath(path)} holds what looks like ${label}.`,
    {
      detail: `${HOW_TO_FIX} If it is not a secret, rewrite it so it does not look like one (e.g. move long random identifiers to a file in the release).`,
      ...(key ? { path: formatJsonPath(path.slice(0, -1)), location: doc.locate(path, { key: true }) } : at(doc, path)),
      ...(address ? { address } : {}),
    },
  );
}

/**
 * The raw text of a YAML document: comments (no value holds them) with every detector, and the whole text with
 * the context-free shapes, which also covers tags, keys and anything in a file that did not parse.
 */
function scanSource(file: string, text: string, out: Diagnostic[]): boolean {
  let reported = false;
  forEachComment(text, (comment, offset) => {
    const finding = scanString(comment, {});
    if (!finding || reported) return;
    reported = true;
    out.push(
      errorDiag('policy.secret-literal', `A comment in ${file} holds what looks like ${finding.label}.`, {
        detail: `${HOW_TO_FIX} Comments are committed like everything else: delete the value from the comment.`,
        location: { file, line: lineAt(text, offset), column: 1 },
      }),
    );
  });
  const spans = findSecretSpans(text, { shapesOnly: true });
  for (const s of spans) rememberSecret(text.slice(s.start, s.end));
  // A shape inside a value was reported at its JSON path already; this net is for what no value holds.
  if (spans.length > 0 && !reported && !out.some((d) => d.location?.file === file)) {
    out.push(
      errorDiag('policy.secret-literal', `${file} holds what looks like ${spans[0]!.label}.`, {
        detail: HOW_TO_FIX,
        location: { file, line: lineAt(text, spans[0]!.start), column: 1 },
      }),
    );
  }
  return reported || spans.length > 0;
}

/** File names that hold secrets by convention, whatever their content. */
const SECRET_FILE_NAME =
  /(?:^|\/)(?:\.env(?:\.(?!example$|sample$|template$|dist$)[^/]+)?|[^/]+\.(?:ppk|p12|pfx|jks|keystore|kdbx|key)|id_(?:rsa|dsa|ecdsa|ed25519)|\.netrc|\.pgpass|\.htpasswd|\.npmrc|\.pypirc|\.git-credentials|credentials(?:\.json)?)$/;

function scanFile(file: string, body: string, address: string | undefined, out: Diagnostic[]): void {
  const where = address ? { address } : {};
  const line = privateKeyLine(body);
  if (line !== undefined) {
    out.push(
      errorDiag('policy.secret-literal', `${file} contains a private key block.`, {
        detail:
          'Private keys never belong in the desired-state repository: delete the file, rotate the key (it is in git history now), and commit only the public key (e.g. `cosign public-key`, `openssl pkey -pubout`).',
        location: { file, line, column: 1 },
        ...where,
      }),
    );
    for (const s of findSecretSpans(body, { shapesOnly: true })) rememberSecret(body.slice(s.start, s.end));
    return;
  }
  if (SECRET_FILE_NAME.test(file)) {
    out.push(
      errorDiag('policy.secret-file', `${file} is a kind of file that holds secrets (by its name).`, {
        detail:
          "Secret files never belong in the desired-state repository: delete the file, rotate what it held (it is in git history now), store it on the host and refer to it from the contract's `secrets` (e.g. `env-file:/etc/agentvm/<name>.env#VAR`).",
        location: { file, line: 1, column: 1 },
        ...where,
      }),
    );
    for (const s of findSecretSpans(body, {})) rememberSecret(body.slice(s.start, s.end));
    return;
  }
  // Other files (signature bundles, public keys, trusted roots) are random by nature: only the context-free shapes.
  const spans = findSecretSpans(body, { shapesOnly: true });
  if (spans.length === 0) return;
  for (const s of spans) rememberSecret(body.slice(s.start, s.end));
  out.push(
    errorDiag('policy.secret-literal', `${file} holds what looks like ${spans[0]!.label}.`, {
      detail:
        "Secrets never belong in the desired-state repository: delete the value, rotate it (it is in git history now), and refer to it from the contract's `secrets`.",
      location: { file, line: lineAt(body, spans[0]!.start), column: 1 },
      ...where,
    }),
  );
}
