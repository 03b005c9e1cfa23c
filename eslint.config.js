// Lint: typescript-eslint's recommended rules on product and test code; generated files are checked by tsc only.
// Two rules keep the map true (STYLE §12): `agentvm/layers` (imports point down the table in eslint/layers.js) and
// `no-console` outside the printing layers (commands, cli, ui) — the core never prints.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import agentvm from './eslint/layers.js';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'src/generated/**', 'coverage/**', 'examples/**', 'fixtures/**', 'reference-workloads/**/node_modules/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { process: 'readonly', console: 'readonly', URL: 'readonly', Buffer: 'readonly', setTimeout: 'readonly', clearTimeout: 'readonly', setInterval: 'readonly', clearInterval: 'readonly' } },
    plugins: { agentvm },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-console': 'error',
    },
  },
  { files: ['src/**/*.ts', 'src/**/*.tsx'], rules: { 'agentvm/layers': 'error' } },
  {
    // One redaction boundary (ADR 0013): in src/ only the base command writes to stdout/stderr; everything else prints
    // through it (an Outcome, say(), or a view it hands the redacted data to). The unit shim is exempt: it runs inside
    // a gateway unit with Node built-ins only and writes nothing but its own errors to that unit's log.
    files: ['src/**/*.ts', 'src/**/*.tsx'],
    ignores: ['src/cli/base-command.ts', 'src/egress/unit-shim.ts', 'src/**/*.test.ts'],
    rules: {
      'no-restricted-syntax': [
        'error',
        {
          selector: "CallExpression[callee.property.name='write'][callee.object.property.name=/^(stdout|stderr)$/][callee.object.object.name='process']",
          message: 'Print through the redaction boundary: return it in the Outcome, or use say() from src/cli/base-command.ts.',
        },
      ],
    },
  },
  {
    files: ['src/commands/**', 'src/cli/**', 'src/ui/**', 'bin/**', 'scripts/**', 'bench/**', 'test/**', 'src/**/*.test.ts', 'eslint/**', 'reference-workloads/**'],
    rules: { 'no-console': 'off' },
  },
);
