// The gate's route table (`<gate dir>/routes.json`): one route per applied preview, `<workload>/<preview>` → its
// loopback upstream, maxTtl and grantees. The gate provider writes it in apply; the server re-reads it when it changes.
// Also the gate's listener settings (`<gate dir>/server.json`, from the host spec's `spec.gate`): written by the
// provider's `gate.server` resource, read by `agentvm gate serve` at start (a change restarts the unit).
// Invariants:
// - An upstream is only ever a loopback TCP port (127.0.0.1) or a unix socket file name inside the workload's own
//   socket directory: nothing in a request, and nothing but a port number or a file name in the table, selects it.
// - The table is replaced atomically (atomic-file.ts): a reader sees the old table or the new one. Every rename makes a
//   new inode, so a reader that compares (inode, mtime, size) never misses a change.
// - Only agentvm's apply writes it, under the host's lease; within one process writes are synchronous
//   read-modify-write, so concurrent applies of two gate resources cannot lose each other's route.

import { createHash } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { AgentvmError, errorDiag, type Diagnostic } from '../diagnostics/index.js';
import { canonicalJson } from '../model/canonical-json.js';
import { readJsonFile, writeFileAtomic } from '../state/atomic-file.js';
import { GateCode } from './codes.js';
import { parseDuration } from './duration.js';
import { isGateDomain, publicOrigin } from './listener.js';

export type Upstream = { port: number } | { socket: string };

export interface GateRoute {
  workload: string;
  preview: string;
  upstream: Upstream;
  /** Longest grant, e.g. `2h`. */
  maxTtl: string;
  /** Identities (emails) that may be granted access; empty: nobody. */
  grantees: string[];
}

export interface RouteTable {
  version: 1;
  /** Host name the routes were applied for (audit records need it); null before the first apply. */
  host: string | null;
  /** Keyed by `<workload>/<preview>`. */
  routes: Record<string, GateRoute>;
}

export const NAME = /^[a-z][a-z0-9-]{0,62}$/;
const SOCKET = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const EMAIL = /^[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+$/;

export function routeKey(workload: string, preview: string): string {
  return `${workload}/${preview}`;
}

/** `w/p` → its parts, or undefined when either is not a DNS label. */
export function parseRouteKey(key: string): { workload: string; preview: string } | undefined {
  const [workload, preview, ...rest] = key.split('/');
  if (rest.length || !workload || !preview || !NAME.test(workload) || !NAME.test(preview)) return undefined;
  return { workload, preview };
}

/** Checks one route's fields (from a desired config or from the table on disk). Returns what is wrong, or []. */
export function routeProblems(value: unknown): string[] {
  const problems: string[] = [];
  if (typeof value !== 'object' || value === null) return ['is not an object'];
  const r = value as Record<string, unknown>;
  if (typeof r.workload !== 'string' || !NAME.test(r.workload)) problems.push('workload must be a DNS label');
  if (typeof r.preview !== 'string' || !NAME.test(r.preview)) problems.push('preview must be a DNS label');
  const u = r.upstream as Record<string, unknown> | undefined;
  const portOk =
    typeof u?.port === 'number' && Number.isInteger(u.port) && u.port >= 1 && u.port <= 65535 && u.socket === undefined;
  const socketOk = typeof u?.socket === 'string' && SOCKET.test(u.socket) && u.port === undefined;
  if (!portOk && !socketOk) problems.push('upstream must be exactly one of a port (1–65535) or a socket file name');
  if (typeof r.maxTtl !== 'string' || parseDuration(r.maxTtl) === undefined)
    problems.push('maxTtl must be a duration like 30m or 8h');
  if (!Array.isArray(r.grantees) || !r.grantees.every((g) => typeof g === 'string' && EMAIL.test(g)))
    problems.push('grantees must be a list of emails');
  return problems;
}

/** The route a gate resource's desired config describes (engine/expand.ts: {preview, upstream, maxTtl, grantees}). */
export function routeFromConfig(
  config: Record<string, unknown>,
  workload: string,
  address: string,
): { route?: GateRoute; diagnostics: Diagnostic[] } {
  const candidate = {
    workload,
    preview: config.preview,
    upstream: config.upstream,
    maxTtl: config.maxTtl,
    grantees: config.grantees ?? [],
  };
  const problems = routeProblems(candidate);
  if (problems.length) {
    return {
      diagnostics: [
        errorDiag(GateCode.invalidConfig, `${address}: ${problems.join('; ')}.`, {
          address,
          detail: 'The preview comes from the workload manifest (`spec.previews`); fix it there and plan again.',
        }),
      ],
    };
  }
  return { route: normaliseRoute(candidate as GateRoute), diagnostics: [] };
}

/** Fields in a fixed order, grantees sorted and unique: two equal routes serialise (and digest) the same. */
export function normaliseRoute(r: GateRoute): GateRoute {
  const upstream: Upstream = 'port' in r.upstream ? { port: r.upstream.port } : { socket: r.upstream.socket };
  return {
    workload: r.workload,
    preview: r.preview,
    upstream,
    maxTtl: r.maxTtl,
    grantees: [...new Set(r.grantees)].sort(),
  };
}

/** sha256 of the canonical route: what the lockfile records and drift compares. */
export function routeDigest(r: GateRoute): string {
  return `sha256:${createHash('sha256')
    .update(canonicalJson(normaliseRoute(r)))
    .digest('hex')}`;
}

/** Reads the table; an absent file is an empty table. Throws `gate.invalid-state` for a file agentvm did not write. */
export function readRouteTable(file: string): RouteTable {
  const value = readJsonFile(file);
  if (value === undefined) return { version: 1, host: null, routes: {} };
  const t = value as Partial<RouteTable>;
  const bad = (why: string): never => {
    throw new AgentvmError(GateCode.invalidState, `${file} is not a gate route table: ${why}.`, {
      detail:
        'agentvm writes this file in apply. Move it aside and run `agentvm apply` again to rewrite it from the manifests.',
    });
  };
  if (t.version !== 1 || typeof t.routes !== 'object' || t.routes === null) bad('no version 1 and routes');
  if (t.host !== null && (typeof t.host !== 'string' || !NAME.test(t.host))) bad('host is not a host name');
  for (const [key, route] of Object.entries(t.routes!)) {
    const problems = routeProblems(route);
    if (problems.length) bad(`route ${key} ${problems.join('; ')}`);
    if (key !== routeKey((route as GateRoute).workload, (route as GateRoute).preview))
      bad(`route ${key} is filed under the wrong key`);
  }
  return value as RouteTable;
}

export function writeRouteTable(file: string, table: RouteTable): void {
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o750 });
  const routes: Record<string, GateRoute> = {};
  for (const key of Object.keys(table.routes).sort()) routes[key] = normaliseRoute(table.routes[key]!);
  writeFileAtomic(file, `${JSON.stringify({ version: 1, host: table.host, routes }, null, 2)}\n`, { mode: 0o640 });
}

/** The listener settings of `gate.server` (host spec `spec.gate`, defaults filled in), as `server.json` holds them. */
export interface GateServerSettings {
  version: 1;
  /** Host name for audit records. */
  host: string;
  address: string;
  port: number;
  /** Certificate and key by reference (`file:/abs/path`); null: plain HTTP, loopback only. */
  tls: { cert: string; key: string } | null;
  /** The public origin behind a TLS-terminating proxy (host spec spec.gate.publicUrl). Absent when none, so settings
   *  written before it existed keep their digest. */
  publicUrl?: string | null;
  /** `path` (the opt-in, ADR 0014); absent: host routing. */
  routing?: 'host' | 'path' | null;
  /** The gate domain under host routing (host spec spec.gate.domain); absent: publicUrl's host, else `localhost`. */
  domain?: string | null;
}

const FILE_REF = /^file:\/[^\0]*$/;

/** What is wrong with listener settings (from a desired config or from server.json), or []. */
export function serverSettingsProblems(value: unknown): string[] {
  if (typeof value !== 'object' || value === null) return ['is not an object'];
  const v = value as Record<string, unknown>;
  const problems: string[] = [];
  if (typeof v.host !== 'string' || !NAME.test(v.host)) problems.push('host must be a host name');
  if (typeof v.address !== 'string' || v.address === '' || /\s/.test(v.address))
    problems.push('address must be an IP address or host name');
  if (typeof v.port !== 'number' || !Number.isInteger(v.port) || v.port < 1 || v.port > 65535)
    problems.push('port must be 1–65535');
  const tls = v.tls as Record<string, unknown> | null | undefined;
  if (
    tls !== null &&
    (typeof tls !== 'object' ||
      typeof tls.cert !== 'string' ||
      typeof tls.key !== 'string' ||
      !FILE_REF.test(tls.cert) ||
      !FILE_REF.test(tls.key))
  ) {
    problems.push('tls must be null or {cert, key} as file:/absolute/path references');
  }
  if (
    v.publicUrl !== undefined &&
    v.publicUrl !== null &&
    (typeof v.publicUrl !== 'string' || publicOrigin(v.publicUrl) === undefined)
  ) {
    problems.push('publicUrl must be an http(s) origin without a path, e.g. https://previews.example.com');
  }
  if (v.routing !== undefined && v.routing !== null && v.routing !== 'host' && v.routing !== 'path')
    problems.push('routing must be host or path');
  if (v.domain !== undefined && v.domain !== null && (typeof v.domain !== 'string' || !isGateDomain(v.domain)))
    problems.push('domain must be a lowercase DNS name such as previews.example.com or localhost');
  return problems;
}

/** Reads server.json; absent is undefined. Throws `gate.invalid-state` for a file agentvm did not write. */
export function readServerSettings(file: string): GateServerSettings | undefined {
  const value = readJsonFile(file) as Partial<GateServerSettings> | undefined;
  if (value === undefined) return undefined;
  const problems = value.version === 1 ? serverSettingsProblems(value) : ['no version 1'];
  if (problems.length) {
    throw new AgentvmError(
      GateCode.invalidState,
      `${file} is not the gate's listener settings: ${problems.join('; ')}.`,
      {
        detail:
          'agentvm writes this file in apply (gate.server, from the host spec `spec.gate`). Move it aside and run `agentvm apply` again.',
      },
    );
  }
  return normaliseServerSettings(value as GateServerSettings);
}

export function normaliseServerSettings(s: GateServerSettings): GateServerSettings {
  const out: GateServerSettings = {
    version: 1,
    host: s.host,
    address: s.address,
    port: s.port,
    tls: s.tls ? { cert: s.tls.cert, key: s.tls.key } : null,
  };
  if (s.publicUrl) out.publicUrl = publicOrigin(s.publicUrl) ?? s.publicUrl;
  // Written only when set, so settings applied before they existed keep their digest.
  if (s.routing === 'path') out.routing = 'path';
  if (s.domain) out.domain = s.domain;
  return out;
}

export function writeServerSettings(file: string, settings: GateServerSettings, mode = 0o640): void {
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o750 });
  writeFileAtomic(file, `${JSON.stringify(normaliseServerSettings(settings), null, 2)}\n`, { mode });
}
