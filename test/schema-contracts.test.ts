// The three representations of each contract — JSON Schema (source of truth), generated TypeScript types and the
// runtime zod validator — must not drift apart (ADR 0002).

import { readdirSync, readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import Ajv2020 from 'ajv/dist/2020.js';
import { parse } from 'yaml';
import { loadSchema, SCHEMA_FILES, validatorFor, type DocumentKind } from '../src/contracts/schemas.js';
// @ts-expect-error plain JS build script without types
import { generate, outputName } from '../scripts/gen-types.js';

const root = join(import.meta.dirname, '..');
const schemaFiles = readdirSync(join(root, 'schemas'))
  .filter((f) => f.endsWith('.schema.json'))
  .sort();

function ajv() {
  const a = new Ajv2020.default({ allErrors: true, strict: false });
  for (const f of schemaFiles) a.addSchema(JSON.parse(readFileSync(join(root, 'schemas', f), 'utf8')), f);
  return a;
}

/** Every YAML document in the repository's examples and corpora, with the kind its location implies. */
function corpus(): Array<{ file: string; kind: DocumentKind; value: unknown }> {
  const out: Array<{ file: string; kind: DocumentKind; value: unknown }> = [];
  const walk = (dir: string): void => {
    if (!existsSync(dir)) return;
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (/\.ya?ml$/.test(e.name)) {
        const kind: DocumentKind | undefined =
          e.name === 'contract.yaml'
            ? 'WorkloadContract'
            : e.name === 'manifest.yaml'
              ? 'WorkloadManifest'
              : e.name === 'agentvm.yaml'
                ? 'Config'
                : /\/hosts$/.test(dir)
                  ? 'Host'
                  : undefined;
        if (!kind) continue;
        let value: unknown;
        try {
          // logLevel 'error': the invalid corpus plants secret-shaped tags; YAML.parse would print them as warnings.
          value = parse(readFileSync(p, 'utf8'), { maxAliasCount: 100, uniqueKeys: true, logLevel: 'error' });
        } catch {
          continue; // malformed YAML cases are not schema cases
        }
        out.push({ file: p.slice(root.length + 1), kind, value });
      }
    }
  };
  walk(join(root, 'examples'));
  walk(join(root, 'fixtures'));
  walk(join(root, 'reference-workloads'));
  return out;
}

describe('schemas/ are the source of truth', () => {
  it('every schema is draft 2020-12 with an $id, and compiles', () => {
    const a = ajv();
    for (const f of schemaFiles) {
      const s = loadSchema(f);
      expect(s.$schema, f).toBe('https://json-schema.org/draft/2020-12/schema');
      expect(String(s.$id), f).toMatch(/^https:\/\/agentvm\.dev\/schemas\/v1alpha1\/.+\.schema\.json$/);
      expect(a.getSchema(f), f).toBeTruthy();
    }
  });

  it('document schemas pin apiVersion agentvm.dev/v1alpha1', () => {
    for (const f of Object.values(SCHEMA_FILES)) {
      const props = loadSchema(f).properties as Record<string, { const?: string }>;
      expect(props.apiVersion?.const, f).toBe('agentvm.dev/v1alpha1');
    }
  });

  it('src/generated matches a fresh generation from schemas/ (run `npm run gen` if this fails)', async () => {
    for (const f of schemaFiles) {
      const committed = readFileSync(join(root, 'src', 'generated', outputName(f)), 'utf8');
      expect(committed, `src/generated/${outputName(f)} drifted from schemas/${f}`).toBe(await generate(f));
    }
  });

  it('the zod validators built from the schemas agree with an independent JSON Schema validator on every corpus document', () => {
    const a = ajv();
    const docs = corpus();
    expect(docs.length).toBeGreaterThan(20);
    let accepted = 0;
    let rejected = 0;
    for (const d of docs) {
      const byAjv = a.validate(SCHEMA_FILES[d.kind], d.value);
      const byZod = validatorFor(d.kind).safeParse(d.value).success;
      expect(byZod, `${d.file}: zod ${byZod} vs ajv ${byAjv} ${JSON.stringify(a.errors?.slice(0, 2))}`).toBe(byAjv);
      if (byAjv) accepted++;
      else rejected++;
    }
    // The comparison is only meaningful if the corpus exercises both verdicts.
    expect(accepted).toBeGreaterThan(5);
    expect(rejected).toBeGreaterThan(5);
  });
});
