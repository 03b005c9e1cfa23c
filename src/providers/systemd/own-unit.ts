// What a provider of one of agentvm's own service units (the gate server, the egress proxy, the MCP gateways) does
// with the unit on the host: which scope it lives in, whether the unit file there is ours (its X-AgentvmOwner mark),
// its state, systemctl steps whose failure is a diagnostic naming the resource, waiting until it serves, finding it
// (list) and removing it (delete). The unit text is rendered elsewhere (src/support/service-unit.ts); these are the
// I/O steps those providers take the same way.

import { readFile, unlink } from 'node:fs/promises';
import path from 'node:path';
import { errorDiag, type Diagnostic } from '../../diagnostics/index.js';
import type { LiveResource, LockedResource, Reason } from '../../model/resources.js';
import type { HostContext, PlanResponse } from '../provider.js';
import type { UnitScope } from './analyze.js';
import { parseShow, type SystemdEndpoint } from './systemctl.js';
import { parseUnitFile, valuesOf } from './unit-file.js';
import { unsafeUnitValue } from '../../support/service-unit.js';

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

/** Resolves a scope's endpoint; throws when the scope cannot be resolved here (no such manager). */
export type EndpointFor = (scope: UnitScope) => SystemdEndpoint;

/** The endpoints of `scopes` that can be resolved here: a scope that cannot has no unit of ours. */
export function resolvableEndpoints(endpointFor: EndpointFor, scopes: readonly UnitScope[]): SystemdEndpoint[] {
  return scopes.flatMap((scope) => {
    try {
      return [endpointFor(scope)];
    } catch {
      return [];
    }
  });
}

/** The scope searched: the recorded one, else both (an orphan may be in either). */
export function scopesToSearch(known: UnitScope | undefined): UnitScope[] {
  return known ? [known] : ['system', 'user'];
}

/**
 * delete: in each endpoint where `unit`'s file is marked as `address`'s, stop it (online), disable it, remove the file,
 * reload the manager and forget its failure state. A unit file that is not ours is left alone. Stops at the first
 * failed stop or disable (`removed: false`; the diagnostics say which): the caller then keeps the unit's other files.
 */
export async function removeOwnedUnit(opts: {
  endpoints: readonly SystemdEndpoint[];
  unit: string;
  address: string;
  ownerKey: string;
  code: string;
  progress: (m: string) => void;
}): Promise<{ removed: boolean; diagnostics: Diagnostic[] }> {
  const { unit, address, code, progress } = opts;
  const diagnostics: Diagnostic[] = [];
  for (const endpoint of opts.endpoints) {
    const unitFile = path.join(endpoint.unitDir, unit);
    if ((await readOwnedUnit(unitFile, opts.ownerKey))?.owner !== address) continue;
    if (endpoint.mode === 'online') {
      progress(`${address}: stopping and disabling ${unit}`);
      if (!(await systemctlStep(endpoint, ['stop', unit], diagnostics, code, address)))
        return { removed: false, diagnostics };
    }
    if (!(await systemctlStep(endpoint, ['disable', unit], diagnostics, code, address)))
      return { removed: false, diagnostics };
    progress(`${address}: removing ${unitFile}`);
    await unlink(unitFile);
    if (endpoint.mode === 'online') {
      await systemctlStep(endpoint, ['daemon-reload'], diagnostics, code, address);
      await endpoint.systemctl(['reset-failed', unit]);
    }
  }
  return { removed: true, diagnostics };
}

/** The first endpoint whose `unit` file is marked as `address`'s (orphan detection by list()). */
export async function findOwnedUnit(
  endpoints: readonly SystemdEndpoint[],
  unit: string,
  address: string,
  ownerKey: string,
): Promise<SystemdEndpoint | undefined> {
  for (const endpoint of endpoints)
    if ((await readOwnedUnit(path.join(endpoint.unitDir, unit), ownerKey))?.owner === address) return endpoint;
  return undefined;
}

/**
 * Polls until the unit's main process says it serves — `serves(pid)`, e.g. its status file names that pid and the
 * settings digest apply wrote — or the unit failed, or `timeoutMs` passed. Counted polls every 50 ms; the timeout is
 * the caller's bound on a start, not a measurement.
 */
export async function waitUnitServing(
  endpoint: SystemdEndpoint,
  unit: string,
  serves: (pid: number) => boolean,
  timeoutMs: number,
): Promise<{ ok: true; pid: number } | { ok: false; why: string }> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const s = await showUnit(endpoint, unit, ['ActiveState', 'SubState', 'Result', 'ExecMainStatus', 'MainPID']);
    const pid = Number(s.MainPID ?? 0);
    if (s.ActiveState === 'active' && pid > 0 && serves(pid)) return { ok: true, pid };
    const why = `${s.ActiveState ?? '?'}/${s.SubState ?? '?'}, result ${s.Result ?? '?'}, exit status ${s.ExecMainStatus ?? '?'}`;
    if (s.ActiveState === 'failed') return { ok: false, why };
    if (Date.now() > deadline) return { ok: false, why: `${why} after ${timeoutMs} ms` };
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** One endpoint per host root and scope, made on first use: unit paths are computed once, and per-endpoint state
 *  (batches, locks) is keyed by the same object for the whole run. */
export class EndpointCache {
  private readonly endpoints = new Map<string, SystemdEndpoint>();

  get(
    host: HostContext,
    scope: UnitScope,
    make: (host: HostContext, scope: UnitScope) => SystemdEndpoint,
  ): SystemdEndpoint {
    const key = `${host.root}\0${scope}`;
    let ep = this.endpoints.get(key);
    if (!ep) {
      ep = make(host, scope);
      this.endpoints.set(key, ep);
    }
    return ep;
  }
}

/**
 * The plan of a unit no longer desired: nothing when it neither runs nor was applied, else a delete whose reason is
 * `why` (what no longer needs it, and that the unit is stopped, disabled and removed).
 */
export function planRemoval(
  live: Pick<LiveResource, 'exists'>,
  locked: LockedResource | undefined,
  drift: Reason[],
  why: string,
): PlanResponse {
  if (!live.exists && !locked) return { action: 'noop', effect: 'none', reasons: [], drift, diagnostics: [] };
  return { action: 'delete', effect: 'none', reasons: [{ code: 'removed', message: why }], drift, diagnostics: [] };
}

/**
 * The ExecStart arguments of one of agentvm's own units, checked (not escaped): an error naming the first argument a
 * unit line cannot carry literally (empty, white space, a line break, %, $, a quote or a backslash), for `subject`
 * (what the unit is, e.g. "the egress proxy unit"); undefined when every argument is safe.
 */
export function unsafeExecArgs(
  args: readonly string[],
  code: string,
  subject: string,
  address: string,
): Diagnostic | undefined {
  const bad = args.find((a) => a === '' || unsafeUnitValue(a, { whitespace: true }));
  if (bad === undefined) return undefined;
  return errorDiag(code, `A value for ${subject} cannot be written into a unit file safely: ${JSON.stringify(bad)}.`, {
    address,
    detail: 'Unit lines must not contain whitespace, line breaks, %, $, quotes or backslashes. Use paths without them.',
  });
}
