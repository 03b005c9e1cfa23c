#!/usr/bin/env node
// Writes oclif.manifest.json at build time so that at run time oclif imports only the command being run
// (without it, every command file is imported on each invocation — DESIGN §6). Runs after `tsc`.
import { rmSync, writeFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Config } from '@oclif/core';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const file = join(root, 'oclif.manifest.json');
rmSync(file, { force: true });
const config = await Config.load(root);
const plugin = config.plugins.get(config.pjson.name);
if (!plugin) throw new Error('root plugin not found');
const manifest = plugin.manifest;
if (Object.keys(manifest.commands).length === 0) {
  console.error('manifest: no commands found under dist/commands — did tsc run?');
  process.exit(1);
}
writeFileSync(file, `${JSON.stringify(manifest, null, 2)}\n`);
console.log(`oclif.manifest.json: ${Object.keys(manifest.commands).length} commands`);
