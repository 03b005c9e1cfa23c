// Types of eslint/layers.js for the test that checks the README's drawing against the rule's table.
import type { ESLint } from 'eslint';

export const LAYERS: string[][];
declare const plugin: ESLint.Plugin;
export default plugin;
