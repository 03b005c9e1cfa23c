// Loads the public JSON Schemas from schemas/ (the source of truth, ADR 0002) and builds the runtime zod
// validators from them with z.fromJSONSchema, so validation cannot drift from the published contract.
// Also answers "what does the schema say at this path" for hints and "did you mean".
// zod itself is loaded on the first validator built, never at start-up (see zod() below).

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import type { z } from 'zod';
import type { JsonPath } from './yaml-document.js';

export type DocumentKind = 'WorkloadContract' | 'WorkloadManifest' | 'Host' | 'Config';

export const SCHEMA_FILES: Record<DocumentKind, string> = {
  WorkloadContract: 'workload-contract.schema.json',
  WorkloadManifest: 'workload-manifest.schema.json',
  Host: 'host.schema.json',
  Config: 'config.schema.json',
};

export type JsonSchema = Record<string, unknown>;

/** `schemas/` sits at the package root: two levels above both src/contracts and dist/contracts. */
export function schemaPath(file: string): string {
  return fileURLToPath(new URL(`../../schemas/${file}`, import.meta.url));
}

const rawCache = new Map<string, JsonSchema>();
export function loadSchema(file: string): JsonSchema {
  let s = rawCache.get(file);
  if (!s) {
    s = JSON.parse(readFileSync(schemaPath(file), 'utf8')) as JsonSchema;
    rawCache.set(file, s);
  }
  return s;
}

/** What z.fromJSONSchema accepts. */
export type JsonSchemaInput = Parameters<typeof z.fromJSONSchema>[0];

let zodNamespace: typeof z | undefined;
/**
 * zod, loaded on first use. Its import costs ≈50 ms — a third of agentvm's start-up — and a run whose documents all
 * hit the document cache and that reads no state file (validate, a pull-request plan without host state) builds no
 * validator, so it is not imported up front. Validators are built inside synchronous parsing, hence `require`
 * (zod ships CommonJS beside ESM). zod is only ever required as CommonJS (here and in state/state-schemas.ts), so one
 * copy is loaded; a runtime ESM `import … from 'zod'` anywhere would load a second one, at start-up. `import type` only.
 */
export function zod(): typeof z {
  zodNamespace ??= (createRequire(import.meta.url)('zod') as typeof import('zod')).z;
  return zodNamespace;
}

/** A validator built from a JSON Schema by zod's z.fromJSONSchema. */
export function validatorFromJsonSchema(schema: JsonSchemaInput): z.ZodType {
  return zod().fromJSONSchema(schema);
}

const validatorCache = new Map<DocumentKind, z.ZodType>();
export function validatorFor(kind: DocumentKind): z.ZodType {
  let v = validatorCache.get(kind);
  if (!v) {
    v = validatorFromJsonSchema(loadSchema(SCHEMA_FILES[kind]) as JsonSchemaInput);
    validatorCache.set(kind, v);
  }
  return v;
}

/** The schema node that governs `path` (following $ref, properties, items, additionalProperties), if any. */
export function schemaAt(root: JsonSchema, path: JsonPath): JsonSchema | undefined {
  let node: JsonSchema | undefined = deref(root, root);
  for (const seg of path) {
    node = deref(root, node);
    if (!node) return undefined;
    if (typeof seg === 'number') {
      node = deref(root, node.items as JsonSchema | undefined);
    } else {
      const props = node.properties as Record<string, JsonSchema> | undefined;
      if (props && seg in props) node = deref(root, props[seg]);
      else if (node.additionalProperties && typeof node.additionalProperties === 'object')
        node = deref(root, node.additionalProperties as JsonSchema);
      else return undefined;
    }
  }
  return node ? deref(root, node) : undefined;
}

function deref(root: JsonSchema, node: JsonSchema | undefined): JsonSchema | undefined {
  let n = node;
  for (let i = 0; n && typeof n.$ref === 'string' && i < 10; i++) {
    const ref = n.$ref as string;
    if (!ref.startsWith('#/')) return n;
    let target: unknown = root;
    for (const part of ref.slice(2).split('/')) target = (target as Record<string, unknown> | undefined)?.[part];
    // Keep the referring node's own description (it is more specific than the definition's).
    const { $ref: _ignored, ...own } = n;
    n = { ...(target as JsonSchema), ...own };
  }
  return n;
}

export function propertyNames(node: JsonSchema | undefined): string[] {
  const props = node?.properties as Record<string, unknown> | undefined;
  return props ? Object.keys(props) : [];
}
