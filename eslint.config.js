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
    files: ['src/commands/**', 'src/cli/**', 'src/ui/**', 'bin/**', 'scripts/**', 'bench/**', 'test/**', 'src/**/*.test.ts', 'eslint/**', 'reference-workloads/**'],
    rules: { 'no-console': 'off' },
  },
);
