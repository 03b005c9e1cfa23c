// Turns zod issues (from validators built out of schemas/) into diagnostics a user can act on: file:line:column,
// the JSON path, what is wrong, and how to fix it — with "did you mean" for unknown fields and enum values.

import { errorDiag, type Diagnostic } from '../diagnostics/index.js';
import { didYouMean } from './did-you-mean.js';
import { safeText } from '../secrets/text-safety.js';
import {
  loadSchema,
  propertyNames,
  schemaAt,
  SCHEMA_FILES,
  validatorFor,
  type DocumentKind,
  type JsonSchema,
} from './schemas.js';
import { formatJsonPath, type JsonPath, type YamlDocument } from './yaml-document.js';

interface Issue {
  code: string;
  path: PropertyKey[];
  message: string;
  keys?: string[];
  values?: unknown[];
  expected?: string;
  errors?: Issue[][];
  issues?: Issue[];
  minimum?: number | bigint;
  maximum?: number | bigint;
  origin?: string;
}

export function validateAgainstSchema(kind: DocumentKind, doc: YamlDocument): Diagnostic[] {
  const result = validatorFor(kind).safeParse(doc.value);
  if (result.success) return [];
  const root = loadSchema(SCHEMA_FILES[kind]);
  const out: Diagnostic[] = [];
  for (const issue of result.error.issues as unknown as Issue[]) out.push(...toDiagnostics(issue, [], doc, root));
  return dedupe(out);
}

function toDiagnostics(issue: Issue, base: JsonPath, doc: YamlDocument, root: JsonSchema): Diagnostic[] {
  const path: JsonPath = [...base, ...issue.path.map((p) => (typeof p === 'number' ? p : String(p)))];
  const where = { path: formatJsonPath(path), location: doc.locate(path) };
  const node = schemaAt(root, path);
  const hint = typeof node?.description === 'string' ? node.description : undefined;
  const value = getIn(doc.value, path);
  const describe = (v: unknown): string => describeValue(v, path);

  switch (issue.code) {
    case 'unrecognized_keys': {
      const allowed = propertyNames(schemaAt(root, path));
      return (issue.keys ?? []).map((k) => {
        const guess = didYouMean(k, allowed);
        const keyPath = [...path, k];
        return errorDiag(
          'schema.unknown-field',
          `Unknown field ${shownKey(k)}${guess ? ` — did you mean \`${guess}\`?` : '.'}`,
          {
            detail: allowed.length ? `Allowed fields here: ${allowed.join(', ')}.` : 'No fields are allowed here.',
            path: formatJsonPath(keyPath),
            location: doc.locate(keyPath, { key: true }),
          },
        );
      });
    }
    case 'invalid_type': {
      if (value === undefined) {
        const field = path[path.length - 1];
        return [
          errorDiag('schema.missing-field', `Required field \`${String(field)}\` is missing.`, {
            detail: hint ? `Add it: ${hint}` : `Add \`${String(field)}\` here.`,
            path: where.path,
            location: doc.locate(path.slice(0, -1)),
          }),
        ];
      }
      return [
        errorDiag('schema.type', `Expected ${issue.expected ?? 'another type'}, got ${describe(value)}.`, {
          detail: hint ?? 'Change the value to the expected type.',
          ...where,
        }),
      ];
    }
    case 'invalid_value': {
      const allowed = (issue.values ?? []).map((v) => String(v));
      const last = path[path.length - 1];
      if (value === undefined) {
        return [
          errorDiag('schema.missing-field', `Required field \`${String(last)}\` is missing.`, {
            detail: `Add it: ${allowed.length === 1 ? `\`${String(last)}: ${allowed[0]}\`` : `one of ${allowed.map((a) => JSON.stringify(a)).join(', ')}`}.${hint ? ` ${hint}` : ''}`,
            path: where.path,
            location: doc.locate(path.slice(0, -1)),
          }),
        ];
      }
      if (last === 'apiVersion') {
        return [
          errorDiag('document.api-version', `Unsupported apiVersion ${describe(value)}.`, {
            detail: `Use \`apiVersion: ${allowed[0] ?? 'agentvm.dev/v1alpha1'}\`.`,
            ...where,
          }),
        ];
      }
      if (last === 'kind' && path.length === 1) {
        return [
          errorDiag('document.wrong-kind', `This file must hold a \`${allowed[0] ?? '?'}\`, not ${describe(value)}.`, {
            detail: `Set \`kind: ${allowed[0] ?? '?'}\`, or move the document to the place its kind belongs.`,
            ...where,
          }),
        ];
      }
      const guess = typeof value === 'string' ? didYouMean(value, allowed) : undefined;
      return [
        errorDiag(
          'schema.invalid-value',
          `${describe(value)} is not allowed here${guess ? ` — did you mean ${JSON.stringify(guess)}?` : '.'}`,
          {
            detail: `Use one of: ${allowed.map((a) => JSON.stringify(a)).join(', ')}.`,
            ...where,
          },
        ),
      ];
    }
    case 'invalid_format':
      return [
        errorDiag('schema.pattern', `${describe(value)} does not have the required form.`, {
          detail: hint ?? `It must match ${String((issue as { pattern?: string }).pattern ?? 'the schema pattern')}.`,
          ...where,
        }),
      ];
    case 'too_small':
    case 'too_big': {
      const small = issue.code === 'too_small';
      const bound = small ? issue.minimum : issue.maximum;
      const what =
        issue.origin === 'array'
          ? 'entries'
          : issue.origin === 'string'
            ? 'characters'
            : issue.origin === 'object'
              ? 'fields'
              : '';
      return [
        errorDiag(
          'schema.range',
          `Too ${small ? 'small' : 'large'}: ${small ? 'at least' : 'at most'} ${String(bound)}${what ? ` ${what}` : ''} allowed.`,
          { detail: hint ?? 'Bring the value into range.', ...where },
        ),
      ];
    }
    case 'invalid_key': {
      const key = path[path.length - 1];
      return [
        errorDiag(
          'schema.invalid-key',
          `Key ${typeof key === 'string' ? shownKey(key) : String(key)} is not allowed here.`,
          {
            detail: hint ?? 'Rename the key to the allowed form.',
            path: where.path,
            location: doc.locate(path, { key: true }),
          },
        ),
      ];
    }
    case 'invalid_union': {
      // Report the branch that got furthest (fewest issues): usually what the user meant.
      const branches = issue.errors ?? [];
      const best = branches.slice().sort((a, b) => a.length - b.length)[0];
      if (best && best.length) return best.flatMap((i) => toDiagnostics(i, path, doc, root));
      return [
        errorDiag('schema.invalid', issue.message, { detail: hint ?? 'Check the value against the schema.', ...where }),
      ];
    }
    case 'not_multiple_of':
    case 'custom':
    default:
      if (issue.code === 'custom' && /unique/i.test(issue.message)) {
        return [
          errorDiag('schema.duplicate-item', 'The list holds the same entry twice.', {
            detail: 'Remove the repeated entry.',
            ...where,
          }),
        ];
      }
      return [
        errorDiag('schema.invalid', issue.message, { detail: hint ?? 'Check the value against the schema.', ...where }),
      ];
  }
}

function getIn(value: unknown, path: JsonPath): unknown {
  let cur = value;
  for (const seg of path) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string | number, unknown>)[seg];
  }
  return cur;
}

/** Fields whose values may be secrets are never quoted back; neither is anything that looks like a credential. */
const SENSITIVE_SEGMENTS = new Set(['secrets', 'env', 'tls', 'ref', 'key']);

function describeValue(value: unknown, path: JsonPath): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  if (typeof value === 'string') {
    const sensitive = path.some((seg) => typeof seg === 'string' && SENSITIVE_SEGMENTS.has(seg));
    // safeText refuses anything a secret detector flags and any token-like run (governance/text-safety.ts).
    const safe = sensitive || value.length > 48 ? undefined : safeText(value);
    return safe === undefined ? `a ${value.length}-character string (not shown)` : JSON.stringify(safe);
  }
  return `${typeof value} ${String(value)}`;
}

/** A key name as a diagnostic may show it: in backticks when it cannot be a secret, otherwise described. */
function shownKey(key: string): string {
  const safe = key.length <= 64 ? safeText(key) : undefined;
  return safe === undefined ? `(a ${key.length}-character key, not shown)` : `\`${safe}\``;
}

function dedupe(diags: Diagnostic[]): Diagnostic[] {
  const seen = new Set<string>();
  return diags.filter((d) => {
    const k = `${d.code}|${d.path}|${d.summary}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}
