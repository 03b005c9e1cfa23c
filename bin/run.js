#!/usr/bin/env node
// The agentvm entry point. Kept tiny: oclif reads oclif.manifest.json and imports only the command that runs.
// Start-up budget (README, bench/startup.js): `--version` within 3× of `node -e 0`, so it is answered here without
// loading @oclif/core (≈75 ms of imports), printing exactly oclif's `config.userAgent`
// (`<name>/<version> <platform>-<arch> node-<version>`; test/startup-imports.test.ts compares both). oclif treats
// only a first argument of `--version` as the version flag (package.json names no additionalVersionFlags).
import { readFileSync } from 'node:fs';
import { arch, platform, release } from 'node:os';

if (process.argv[2] === '--version' && !mayBeWsl()) {
  const pjson = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
  process.stdout.write(`${pjson.name}/${pjson.version || '0.0.0'} ${platform()}-${arch() === 'ia32' ? 'x86' : arch()} node-${process.version}\n`);
} else {
  // oclif's own engine check requires semver (≈47 files, ≈18 ms) to test Node against @oclif/core's `engines`
  // (>=18), which agentvm's `engines` (>=20.17) already exceed. Skipped for the import only, so children of agentvm
  // do not inherit the setting.
  const skipped = process.env.OCLIF_DISABLE_ENGINE_WARNING === undefined;
  if (skipped) process.env.OCLIF_DISABLE_ENGINE_WARNING = '1';
  const { execute } = await import('@oclif/core');
  if (skipped) delete process.env.OCLIF_DISABLE_ENGINE_WARNING;
  await execute({ dir: import.meta.url });
}

/**
 * oclif reports the platform `wsl` under the Windows Subsystem for Linux (wsl-utils: "microsoft" in the kernel
 * release or /proc/version, outside a container). Whenever that could be the case, the fast path steps aside and
 * oclif answers itself.
 */
function mayBeWsl() {
  if (process.platform !== 'linux') return false;
  if (/microsoft/i.test(release())) return true;
  try {
    return /microsoft/i.test(readFileSync('/proc/version', 'utf8'));
  } catch {
    return false;
  }
}
