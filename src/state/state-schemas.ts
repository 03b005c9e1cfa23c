// Runtime validators of the state files, built from the public schemas with z.fromJSONSchema (ADR 0002), so what
// agentvm accepts on read cannot drift from what `schemas/` publishes. Loaded lazily: plan/apply pay for it once.
// zod itself is loaded on the first validation, not on import: appending to the audit log (every `job run`, every
// gate decision) never validates, and importing zod costs ≈60 ms of start-up.

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import type { z } from 'zod';

let zod: typeof z | undefined;
function zodLibrary(): typeof z {
  zod ??= (createRequire(import.meta.url)('zod') as { z: typeof z }).z;
  return zod;
}

export type StateSchema = 'lockfile.schema.json' | 'audit-event.schema.json';

/** `schemas/` sits at the package root: two levels above both src/state and dist/state. */
function schemaPath(file: StateSchema): string {
  return fileURLToPath(new URL(`../../schemas/${file}`, import.meta.url));
}

type JsonSchemaInput = Parameters<typeof z.fromJSONSchema>[0];
const validators = new Map<string, z.ZodType>();

function loadSchema(file: StateSchema): Record<string, unknown> {
  return JSON.parse(schemaText(file)) as Record<string, unknown>;
}

const texts = new Map<StateSchema, string>();
/** A state schema file's text, read once per process. */
export function schemaText(file: StateSchema): string {
  let text = texts.get(file);
  if (text === undefined) {
    text = readFileSync(schemaPath(file), 'utf8');
    texts.set(file, text);
  }
  return text;
}

/** The validator of a whole state document. */
export function stateValidator(file: StateSchema): z.ZodType {
  let v = validators.get(file);
  if (!v) {
    v = zodLibrary().fromJSONSchema(loadSchema(file) as JsonSchemaInput);
    validators.set(file, v);
  }
  return v;
}

/** The validator of one definition of a schema (`$defs/<name>`), e.g. a single lockfile resource. */
export function stateDefinitionValidator(file: StateSchema, definition: string): z.ZodType {
  const key = `${file}#${definition}`;
  let v = validators.get(key);
  if (!v) {
    const schema = loadSchema(file);
    v = zodLibrary().fromJSONSchema({
      $schema: schema.$schema,
      $defs: schema.$defs,
      $ref: `#/$defs/${definition}`,
    } as JsonSchemaInput);
    validators.set(key, v);
  }
  return v;
}

/** The first problem zod found, as `$.path: message` (enough to locate a hand edit in a state file). */
export function firstIssue(error: z.ZodError): string {
  const issue = error.issues[0];
  if (!issue) return 'unknown problem';
  const where = issue.path.length ? `$.${issue.path.map((p) => String(p)).join('.')}` : '$';
  return `${where}: ${issue.message}`;
}
