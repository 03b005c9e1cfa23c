// What a provider of one of agentvm's own service units (the gate server, the egress proxy) does with the unit on the
// host: which scope it lives in, whether the unit file there is ours (its X-AgentvmOwner mark), its state, and
// systemctl steps whose failure is a diagnostic naming the resource. The unit text is rendered elsewhere
// (src/support/service-unit.ts); these are the I/O steps both providers take the same way.

import { readFile } from 'node:fs/promises';
import { errorDiag, type Diagnostic } from '../../diagnostics/index.js';
import type { LockedResource } from '../../model/resources.js';
import type { UnitScope } from './analyze.js';
import { parseShow, type SystemdEndpoint } from './systemctl.js';
import { parseUnitFile, valuesOf } from './unit-file.js';

/** The scope the desired config or the lockfile entry names; undefined for an orphan. */
export function scopeOf(
  config: Record<string, unknown> | undefined,
  locked: LockedResource | undefined,
): UnitScope | undefined {
  const s = config?.scope ?? locked?.attributes?.scope;
  return s === 'user' || s === 'system' ? s : undefined;
}

/** The unit file's text and the owner it is marked with (`ownerKey` in [Unit]); undefined when there is no file. An
 *  unparseable file has no owner: it is not ours to change. */
export async function readOwnedUnit(
  file: string,
  ownerKey: string,
): Promise<{ text: string; owner: string | undefined } | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    return undefined;
  }
  try {
    return { text, owner: valuesOf(parseUnitFile(text), 'Unit', ownerKey).at(-1) };
  } catch {
    return { text, owner: undefined };
  }
}

/** `systemctl show` of some properties; empty when systemctl fails. */
export async function showUnit(
  endpoint: SystemdEndpoint,
  unit: string,
  props: string[],
): Promise<Record<string, string>> {
  const r = await endpoint.systemctl(['show', unit, `--property=${props.join(',')}`]);
  return r.code === 0 ? parseShow(r.stdout) : {};
}

/** Runs systemctl; a failure becomes an error diagnostic `code` on `address` (false). */
export async function systemctlStep(
  endpoint: SystemdEndpoint,
  args: string[],
  diagnostics: Diagnostic[],
  code: string,
  address: string,
): Promise<boolean> {
  const r = await endpoint.systemctl(args);
  if (r.code === 0) return true;
  diagnostics.push(
    errorDiag(code, `${address}: systemctl ${args.join(' ')} failed (exit ${r.code}).`, {
      address,
      detail: (r.stderr.trim() || r.stdout.trim() || 'no output').slice(0, 2000),
    }),
  );
  return false;
}
