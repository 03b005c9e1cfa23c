#!/usr/bin/env node
// Generates src/generated/*.ts from schemas/*.schema.json with json-schema-to-typescript.
// schemas/ is the source of truth (ADR 0002); the generated files are committed and a test fails when they drift.
// Usage: node scripts/gen-types.js [--check]   (--check: exit 1 if a committed file differs, write nothing)
import { readFileSync, writeFileSync, readdirSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { compile } from 'json-schema-to-typescript';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const check = process.argv.includes('--check');

export async function generate(schemaFile) {
  const schema = JSON.parse(readFileSync(join(root, 'schemas', schemaFile), 'utf8'));
  const banner = `// GENERATED from schemas/${schemaFile} by scripts/gen-types.js. Do not edit: edit the schema and run \`npm run gen\`.`;
  return compile(schema, schema.title, {
    bannerComment: banner,
    additionalProperties: false,
    unreachableDefinitions: false,
    strictIndexSignatures: true,
    format: true,
    cwd: join(root, 'schemas'),
    style: { singleQuote: true, printWidth: 120 },
  });
}

export function outputName(schemaFile) {
  return schemaFile.replace(/\.schema\.json$/, '.ts');
}

async function main() {
  const files = readdirSync(join(root, 'schemas'))
    .filter((f) => f.endsWith('.schema.json'))
    .sort();
  let drift = 0;
  for (const f of files) {
    const out = join(root, 'src', 'generated', outputName(f));
    const text = await generate(f);
    if (check) {
      let current = '';
      try {
        current = readFileSync(out, 'utf8');
      } catch {
        /* missing counts as drift */
      }
      if (current !== text) {
        console.error(`drift: src/generated/${outputName(f)} does not match schemas/${f}`);
        drift++;
      }
    } else {
      writeFileSync(out, text);
      console.log(`wrote src/generated/${outputName(f)}`);
    }
  }
  if (drift) {
    console.error('Run `npm run gen` and commit the result.');
    process.exit(1);
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await main();
