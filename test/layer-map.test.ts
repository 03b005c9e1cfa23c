// The layer map is enforced, not hoped for: the lint rule (eslint/layers.js) rejects a planted wrong-way import, a
// leaf that imports a package, a folder that is not on the map and a console call in the core; it accepts the tree
// as it is; and the README's drawing is exactly the rule's table, so neither can drift from the other.

import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { ESLint } from 'eslint';
import { describe, expect, it } from 'vitest';
import { LAYERS } from '../eslint/layers.js';

const repo = path.resolve(import.meta.dirname, '..');
const eslint = new ESLint({ cwd: repo });

async function lint(file: string, code: string): Promise<string[]> {
  const [result] = await eslint.lintText(code, { filePath: path.join(repo, file) });
  return (result?.messages ?? []).map((m) => `${m.ruleId}: ${m.message}`);
}

describe('the layer map', () => {
  it('GIVEN an engine file that imports app WHEN linted THEN the layer rule names both folders', async () => {
    const messages = await lint(
      'src/engine/planted.ts',
      "import { runPlan } from '../app/plan.js';\nexport const x = runPlan;\n",
    );
    expect(messages).toEqual([
      expect.stringMatching(/^agentvm\/layers: engine may not import app: src\/app is above src\/engine/),
    ]);
  });

  it('GIVEN peers (engine and governance) WHEN one imports the other THEN it is refused as a peer import', async () => {
    const messages = await lint('src/engine/planted.ts', "export { evaluatePolicy } from '../governance/index.js';\n");
    expect(messages).toEqual([expect.stringMatching(/governance is a peer of src\/engine/)]);
  });

  it('GIVEN a provider that reaches up into the engine through a dynamic import THEN it is refused', async () => {
    const messages = await lint(
      'src/providers/systemd/planted.ts',
      "export const m = () => import('../../engine/plan.js');\n",
    );
    expect(messages).toEqual([expect.stringMatching(/providers may not import engine/)]);
  });

  it('GIVEN the leaf model WHEN it imports a package or another folder THEN both are refused', async () => {
    expect(await lint('src/model/planted.ts', "import YAML from 'yaml';\nexport default YAML;\n")).toEqual([
      expect.stringMatching(/leaf .* may import only node: built-ins, not yaml/),
    ]);
    expect(await lint('src/model/planted.ts', "export * from '../diagnostics/index.js';\n")).toEqual([
      expect.stringMatching(/model may not import diagnostics/),
    ]);
  });

  it('GIVEN a new folder that is not on the map THEN code in it is refused until the map places it', async () => {
    expect(await lint('src/newfolder/a.ts', 'export const a = 1;\n')).toEqual([
      expect.stringMatching(/src\/newfolder is not on the layer map/),
    ]);
  });

  it('GIVEN a console call WHEN it is in the core THEN no-console refuses it; in a view it is allowed', async () => {
    expect(await lint('src/state/planted.ts', "console.log('x');\n")).toEqual([
      'no-console: Unexpected console statement.',
    ]);
    expect(await lint('src/ui/planted.ts', "console.log('x');\n")).toEqual([]);
  });

  it('GIVEN the downward imports the tree uses THEN they pass', async () => {
    expect(
      await lint(
        'src/app/planted.ts',
        "export { hostPaths } from '../model/index.js';\nexport { computePlan } from '../engine/plan.js';\n",
      ),
    ).toEqual([]);
  });

  it('every folder of src/ is on the map, and the README draws exactly the rule’s table', () => {
    const folders = readdirSync(path.join(repo, 'src'), { withFileTypes: true })
      .filter((d) => d.isDirectory())
      .map((d) => d.name)
      .sort();
    expect(LAYERS.flat().sort()).toEqual(folders);
    const readme = readFileSync(path.join(repo, 'README.md'), 'utf8');
    const drawn = /<!-- layer-map -->\n```\n([\s\S]*?)```/.exec(readme)?.[1];
    expect(drawn, 'README.md has a ```-fenced block after <!-- layer-map -->').toBeDefined();
    const rows = drawn!
      .split('\n')
      .filter((l) => l.trim())
      .map((l) =>
        l
          .split('│')[0]!
          .trim()
          .split(/\s+/)
          .filter((w) => w !== '·'),
      );
    expect(rows).toEqual(LAYERS);
  });
});

describe('the one redaction boundary', () => {
  it('GIVEN a command or a core module that writes to stdout/stderr itself THEN lint refuses it; the base command may', async () => {
    const write = "process.stdout.write('x');\nprocess.stderr.write('y');\n";
    expect(await lint('src/commands/planted.ts', write)).toEqual([
      expect.stringMatching(/^no-restricted-syntax: Print through the redaction boundary/),
      expect.stringMatching(/^no-restricted-syntax: Print through the redaction boundary/),
    ]);
    expect(
      (await lint('src/app/planted.ts', write)).every(
        (m) => m.startsWith('no-restricted-syntax') || m.startsWith('no-console'),
      ),
    ).toBe(true);
    expect(await lint('src/app/planted.ts', write)).toHaveLength(2);
  });
});
