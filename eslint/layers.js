// The layer map of src/, and the lint rule that makes the code obey it. The README's drawing is this table.
// A file in a layer may import its own folder and any folder in a LOWER row; never a folder in its own row or above.
// A folder that is not in the table is an error, so a new folder must be placed on the map before it can be used.

/** Top to bottom. Folders in one row are peers and may not import each other. */
export const LAYERS = [
  ['commands'],
  ['cli'],
  ['ui'],
  ['app'],
  ['governance', 'engine'],
  ['providers'],
  ['egress'],
  ['gate', 'mcp'],
  ['state', 'contracts'],
  ['diagnostics', 'generated', 'support', 'secrets'],
  ['model'],
];

/** Leaves that may import no package at all, only Node's built-ins (`node:*`). */
const BUILTINS_ONLY = new Set(['model', 'support', 'diagnostics', 'generated', 'secrets']);

const rankOf = new Map(LAYERS.flatMap((row, rank) => row.map((folder) => [folder, rank])));

/** `src/<folder>/…` → folder, for a path relative to the repository root with forward slashes. */
function srcFolder(relPath) {
  const m = /^src\/([^/]+)\//.exec(relPath);
  return m ? m[1] : undefined;
}

function posixJoin(dir, spec) {
  const parts = dir.split('/');
  for (const seg of spec.split('/')) {
    if (seg === '.' || seg === '') continue;
    if (seg === '..') parts.pop();
    else parts.push(seg);
  }
  return parts.join('/');
}

/** @type {import('eslint').Rule.RuleModule} */
const layersRule = {
  meta: {
    type: 'problem',
    docs: { description: 'imports point down the layer map of src/ (eslint/layers.js)' },
    messages: {
      upward: '{{from}} may not import {{to}}: src/{{to}} is {{where}} src/{{from}} on the layer map (eslint/layers.js). Move the shared piece down (src/model for shared words, src/support for helpers) or invert the dependency.',
      unplaced: 'src/{{folder}} is not on the layer map: add it to LAYERS in eslint/layers.js (and the README drawing) before code lives there.',
      package: 'src/{{from}} is a leaf of the layer map and may import only node: built-ins, not {{spec}}.',
    },
    schema: [],
  },
  create(context) {
    const cwd = context.cwd.replaceAll('\\', '/');
    const file = context.filename.replaceAll('\\', '/');
    if (!file.startsWith(`${cwd}/`)) return {};
    const rel = file.slice(cwd.length + 1);
    const from = srcFolder(rel);
    if (!from || /\.test\.tsx?$/.test(rel) || /\.fixture\.ts$/.test(rel)) return {};
    const dir = rel.slice(0, rel.lastIndexOf('/'));

    function check(node, spec) {
      if (typeof spec !== 'string') return;
      if (!spec.startsWith('.')) {
        if (BUILTINS_ONLY.has(from) && !spec.startsWith('node:')) context.report({ node, messageId: 'package', data: { from, spec } });
        return;
      }
      const to = srcFolder(`${posixJoin(dir, spec)}/`);
      if (!to || to === from) return;
      const fromRank = rankOf.get(from);
      const toRank = rankOf.get(to);
      if (fromRank === undefined) return context.report({ node, messageId: 'unplaced', data: { folder: from } });
      if (toRank === undefined) return context.report({ node, messageId: 'unplaced', data: { folder: to } });
      if (toRank <= fromRank) context.report({ node, messageId: 'upward', data: { from, to, where: toRank === fromRank ? 'a peer of' : 'above' } });
    }

    return {
      Program(node) {
        if (rankOf.get(from) === undefined) context.report({ node, messageId: 'unplaced', data: { folder: from } });
      },
      ImportDeclaration: (node) => check(node, node.source.value),
      ExportNamedDeclaration: (node) => node.source && check(node, node.source.value),
      ExportAllDeclaration: (node) => check(node, node.source.value),
      ImportExpression: (node) => node.source.type === 'Literal' && check(node, node.source.value),
    };
  },
};

export default { rules: { layers: layersRule } };
