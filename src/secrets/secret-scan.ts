// Whether a parsed document holds anything the secret rules would refuse: the gate the document cache passes before
// it stores a document (contracts/document-cache.ts). It looks at what the policy scan looks at (values with their
// field names, keys, comments and the raw text's context-free shapes, literal values under secret-named env
// variables, literal secret refs and TLS keys), so a document the policy refuses for a secret is never cached.

import {
  DIGEST_FIELDS,
  findSecretSpans,
  isSecretEnvName,
  isSecretEnvReference,
  parseSecretReference,
} from './secret-detectors.js';

export function holdsSecret(value: unknown, text: string): boolean {
  if (findSecretSpans(text, { shapesOnly: true }).length > 0) return true;
  let found = false;
  forEachComment(text, (comment) => {
    if (!found && findSecretSpans(comment, {}).length > 0) found = true;
  });
  return found || valueHoldsSecret(value, []);
}

function valueHoldsSecret(node: unknown, path: readonly string[]): boolean {
  const field = path[path.length - 1];
  if (typeof node === 'string') {
    if (literalWhereReferenceBelongs(node, path)) return true;
    return (
      findSecretSpans(node, {
        digestField: field !== undefined && DIGEST_FIELDS.has(field),
        ...(field !== undefined ? { field } : {}),
      }).length > 0
    );
  }
  if (Array.isArray(node)) return node.some((v) => valueHoldsSecret(v, path));
  if (node !== null && typeof node === 'object') {
    for (const [k, v] of Object.entries(node as Record<string, unknown>)) {
      if (findSecretSpans(k, {}).length > 0 || valueHoldsSecret(v, [...path, k])) return true;
    }
  }
  return false;
}

/** `env.API_TOKEN: <literal>`, `secrets[].ref: <literal>`, `tls.key: <literal>`: refused by the reference rules. */
function literalWhereReferenceBelongs(value: string, path: readonly string[]): boolean {
  const field = path[path.length - 1] ?? '';
  const parent = path[path.length - 2];
  if (parent === 'env' && isSecretEnvName(field)) return !isSecretEnvReference(value);
  if ((parent === 'secrets' && field === 'ref') || (parent === 'tls' && field === 'key'))
    return parseSecretReference(value) === undefined;
  return false;
}

/**
 * Calls `fn` with every YAML comment: from a `#` at the start of a line or after whitespace to the end of the line.
 * A `#` inside a quoted or block scalar is caught too; scanning part of a value twice is harmless. Linear.
 */
export function forEachComment(text: string, fn: (comment: string, offset: number) => void): void {
  for (let i = text.indexOf('#'); i >= 0; i = text.indexOf('#', i + 1)) {
    const prev = i === 0 ? 10 : text.charCodeAt(i - 1);
    if (prev !== 10 && prev !== 13 && prev !== 32 && prev !== 9) continue;
    let end = text.indexOf('\n', i);
    if (end < 0) end = text.length;
    fn(text.slice(i + 1, end), i);
    i = end;
  }
}
