// The use cases behind `gate grant`, `gate revoke` and `gate list`: check a grant against the applied route
// (grantees, maxTtl), write it, revoke it, list live grants — each audited at once (appendAudit). Library code: it
// returns typed results and throws AgentvmError for user mistakes; the commands render.
// Invariant: the one-time token exists only in GrantResult.link / token, which the command prints once; it is never
// written to a file or the audit log.

import os from 'node:os';
import { AgentvmError, userError } from '../diagnostics/index.js';
import { isHostName } from '../model/index.js';
import { currentActor } from '../support/actor.js';
import type { GateGrantResult as GrantResult, GrantSummary } from '../generated/gate-grant-result.js';
import type { GateRevokeResult as RevokeResult } from '../generated/gate-revoke-result.js';
import type { GateListResult as ListResult } from '../generated/gate-list-result.js';
import { auditGateEvent, gateEntry } from './audit.js';
import { GateCode } from './codes.js';
import { formatDuration, parseDuration } from './duration.js';
import { GrantStore, isGrantId, type GrantState } from './grants.js';
import {
  baseUrl,
  DEFAULT_GATE_ADDRESS,
  DEFAULT_GATE_PORT,
  readListenerRecord,
  type ListenerRecord,
} from './listener.js';
import { hostNames } from './host-names.js';
import { gatePaths } from './paths.js';
import { parseRouteKey, readRouteTable, routeKey, type RouteTable } from './routes.js';

// The --json results of gate grant, revoke and list: types generated from their schemas (the source of truth).
export type { GrantSummary, GateGrantResult as GrantResult } from '../generated/gate-grant-result.js';
export type { GateRevokeResult as RevokeResult } from '../generated/gate-revoke-result.js';
export type { GateListResult as ListResult } from '../generated/gate-list-result.js';

function actorName(): string {
  return currentActor();
}

function summary(g: GrantState): GrantSummary {
  return {
    id: g.id,
    preview: routeKey(g.workload, g.preview),
    identity: g.identity,
    reason: g.reason,
    created: g.created,
    expires: g.expires,
    used: g.used,
    revoked: g.revoked,
  };
}

/** Host name for audit records: --host, else the one the routes were applied for. */
function auditHost(table: RouteTable, host: string | undefined): string {
  const h = host ?? table.host;
  if (!h || !isHostName(h)) {
    throw userError(
      GateCode.routeUnknown,
      'No preview routes are applied on this root, so the host is unknown.',
      'Run `agentvm apply` for a host whose workloads declare previews, or pass --host.',
    );
  }
  return h;
}

/** Audits and prunes grants past their expiry (the server does this every second; the CLI too, so state is tidy). */
export function sweep(root: string, host: string): void {
  const paths = gatePaths(root);
  new GrantStore(paths.grants).sweepExpired((g) =>
    auditGateEvent(
      paths.audit,
      gateEntry(
        host,
        'gate.expire',
        'ok',
        {
          preview: routeKey(g.workload, g.preview),
          grantId: g.id,
          identity: g.identity,
          expires: g.expires,
          reason: 'expired',
        },
        { actor: 'agentvm-gate' },
      ),
    ),
  );
}

export function grantAccess(input: {
  root: string;
  host?: string;
  target: string;
  identity: string;
  ttl: string;
  reason: string;
  now?: Date;
}): GrantResult {
  const paths = gatePaths(input.root);
  const table = readRouteTable(paths.routes);
  const names = parseRouteKey(input.target);
  if (!names)
    throw userError(
      GateCode.routeUnknown,
      `${JSON.stringify(input.target)} is not <workload>/<preview>.`,
      'Name the preview as it is declared: the workload name, a slash, and the preview name from its manifest.',
    );
  const key = routeKey(names.workload, names.preview);
  const route = table.routes[key];
  if (!route) {
    const known = Object.keys(table.routes);
    throw userError(
      GateCode.routeUnknown,
      `No applied preview ${key}.`,
      known.length
        ? `Applied previews: ${known.join(', ')}. A preview declared in a manifest becomes a route when \`agentvm apply\` runs.`
        : 'No previews are applied on this host. Declare it in the workload manifest (spec.previews) and run `agentvm apply`.',
    );
  }
  const host = auditHost(table, input.host);
  const listener = readListenerRecord(paths.listener);
  // Nothing is written for a link that could not be printed.
  if ((listener?.routing ?? 'host') === 'host')
    grantLink(paths.dir, listener, names, { linkHost: 'localhost', port: 1, tls: false }, '');
  if (!route.grantees.includes(input.identity)) {
    throw userError(
      GateCode.notGrantee,
      `${JSON.stringify(input.identity)} is not a grantee of ${key}.`,
      route.grantees.length
        ? `It may be granted to: ${route.grantees.join(', ')}. Add the identity to spec.previews[].grantees in git and apply.`
        : 'The preview lists no grantees, so nobody may be granted. Add spec.previews[].grantees in git and apply.',
    );
  }
  const ttlMs = parseDuration(input.ttl);
  if (ttlMs === undefined)
    throw userError(
      GateCode.ttlInvalid,
      `--ttl ${input.ttl} is not a duration.`,
      'Write it like 30m, 2h or 1d (a number and one of s, m, h, d).',
    );
  const maxMs = parseDuration(route.maxTtl)!;
  if (ttlMs > maxMs)
    throw userError(
      GateCode.ttlInvalid,
      `--ttl ${input.ttl} is longer than ${key}'s maximum of ${route.maxTtl}.`,
      `Grant at most ${route.maxTtl} (the manifest's previews[].maxTtl), e.g. --ttl ${formatDuration(maxMs)}; grant again when it runs out.`,
    );
  const reason = input.reason.trim();
  if (reason === '' || reason.length > 500 || /[\r\n\0]/.test(reason))
    throw userError(
      GateCode.invalidConfig,
      '--reason must be one line of 1–500 characters.',
      'Say why access is needed, e.g. --reason "review of the onboarding page".',
    );
  sweep(input.root, host);
  const grantedBy = actorName();
  const { grant, token } = new GrantStore(paths.grants).create({
    workload: names.workload,
    preview: names.preview,
    identity: input.identity,
    reason,
    ttlMs,
    grantedBy,
    ...(input.now ? { now: input.now } : {}),
  });
  auditGateEvent(
    paths.audit,
    gateEntry(
      host,
      'gate.grant',
      'ok',
      { preview: key, grantId: grant.id, identity: grant.identity, reason, expires: grant.expires },
      { actor: grantedBy },
    ),
  );
  const address = listener?.address ?? DEFAULT_GATE_ADDRESS;
  const port = listener?.port ?? DEFAULT_GATE_PORT;
  const tls = listener?.tls ?? false;
  const linkHost = address === '0.0.0.0' || address === '::' ? os.hostname() : address;
  return {
    grant: {
      id: grant.id,
      preview: key,
      identity: grant.identity,
      reason,
      created: grant.created,
      expires: grant.expires,
      used: false,
      revoked: false,
    },
    link: grantLink(paths.dir, listener, names, { linkHost, port, tls }, token),
    listener: {
      ...(listener?.publicUrl ? { publicUrl: listener.publicUrl } : {}),
      address,
      port,
      tls,
      recorded: listener !== undefined,
    },
  };
}

/**
 * The one-time link. Host routing (the default, and what a gate that recorded no routing is assumed to use unless it
 * predates it): `<scheme>://<preview>--<workload>.<domain>[:port]/?grant=…`, scheme and port from the public URL or the
 * listener. Path routing: `<public URL or listener>/p/<workload>/<preview>/?grant=…`.
 */
function grantLink(
  dir: string,
  listener: ListenerRecord | undefined,
  names: { workload: string; preview: string },
  at: { linkHost: string; port: number; tls: boolean },
  token: string,
): string {
  const origin = listener?.publicUrl ?? baseUrl(at.linkHost, at.port, at.tls);
  if ((listener?.routing ?? 'host') === 'path') return `${origin}/p/${names.workload}/${names.preview}/?grant=${token}`;
  const url = new URL(origin);
  const domain = listener?.domain ?? (listener?.publicUrl ? url.hostname : 'localhost');
  const label = hostNames(dir, domain).label(names.workload, names.preview);
  if (label === undefined) {
    throw userError(
      GateCode.routeUnknown,
      `${names.preview}--${names.workload} with its tag is longer than one DNS label (63 characters), so the preview has no host name.`,
      'Shorten the workload or preview name, or serve the gate with path routing (host spec spec.gate.routing: path).',
    );
  }
  return `${url.protocol}//${label}.${domain}${url.port ? `:${url.port}` : ''}/?grant=${token}`;
}

export type RevokeSelection = { grantId: string } | { preview: string } | { all: true };

export function revokeAccess(input: {
  root: string;
  host?: string;
  selection: RevokeSelection;
  now?: Date;
}): RevokeResult {
  const paths = gatePaths(input.root);
  const table = readRouteTable(paths.routes);
  const host = auditHost(table, input.host);
  const store = new GrantStore(paths.grants);
  const now = input.now ?? new Date();
  let selected: GrantState[];
  const sel = input.selection;
  if ('grantId' in sel) {
    const g = isGrantId(sel.grantId) ? store.get(sel.grantId) : undefined;
    if (!g)
      throw userError(
        GateCode.grantUnknown,
        `No grant ${JSON.stringify(sel.grantId)}.`,
        'Grant ids look like g-0123456789abcdef; `agentvm gate list` shows the live ones (expired grants are pruned).',
      );
    selected = [g];
  } else if ('preview' in sel) {
    const names = parseRouteKey(sel.preview);
    if (!names)
      throw userError(
        GateCode.routeUnknown,
        `${JSON.stringify(sel.preview)} is not <workload>/<preview>.`,
        'Name the preview as <workload>/<preview>.',
      );
    selected = store.all().filter((g) => g.workload === names.workload && g.preview === names.preview);
    // A typo must not look like "nothing to revoke": a preview with no route and no grants is unknown.
    if (selected.length === 0 && table.routes[routeKey(names.workload, names.preview)] === undefined) {
      const known = Object.keys(table.routes);
      throw userError(
        GateCode.routeUnknown,
        `No applied preview ${routeKey(names.workload, names.preview)}.`,
        known.length ? `Applied previews: ${known.join(', ')}.` : 'No previews are applied on this host.',
      );
    }
  } else {
    selected = store.all();
  }
  const by = actorName();
  const result: RevokeResult = { revoked: [], alreadyRevoked: [] };
  for (const g of selected) {
    if (store.revoke(g.id, by, now)) {
      auditGateEvent(
        paths.audit,
        gateEntry(
          host,
          'gate.revoke',
          'ok',
          { preview: routeKey(g.workload, g.preview), grantId: g.id, identity: g.identity, reason: 'revoked' },
          { actor: by },
        ),
      );
      result.revoked.push({ ...summary(g), revoked: true });
    } else {
      result.alreadyRevoked.push(g.id);
    }
  }
  return result;
}

export function listGrants(input: { root: string; host?: string; now?: Date }): ListResult {
  const paths = gatePaths(input.root);
  const table = readRouteTable(paths.routes);
  const now = input.now ?? new Date();
  const host = input.host ?? table.host;
  if (host && isHostName(host)) sweep(input.root, host);
  const grants = new GrantStore(paths.grants)
    .all()
    .filter((g) => !g.revoked && Date.parse(g.expires) > now.getTime())
    .map(summary);
  return { now: now.toISOString(), grants };
}

export function assertRevokeSelection(flags: { id?: string; preview?: string; all?: boolean }): RevokeSelection {
  const given = [flags.id !== undefined, flags.preview !== undefined, flags.all === true].filter(Boolean).length;
  if (given !== 1) {
    throw new AgentvmError(
      GateCode.revokeTarget,
      given === 0
        ? 'Nothing to revoke: give a grant id, --preview or --all.'
        : 'Give exactly one of a grant id, --preview or --all.',
      {
        detail:
          'e.g. `agentvm gate revoke g-0123456789abcdef`, `agentvm gate revoke --preview web/site`, `agentvm gate revoke --all`.',
      },
    );
  }
  if (flags.id !== undefined) return { grantId: flags.id };
  if (flags.preview !== undefined) return { preview: flags.preview };
  return { all: true };
}
