// GateProvider (`gate`, addresses `gate.<workload>.<preview>` and `gate.server`): previews declared in git become
// routes of the preview gate. apply writes the route into `<root>/var/lib/agentvm/gate/routes.json`
// (src/gate/routes.ts), which the running server re-reads on its next request; delete removes the route AND every
// grant of that preview (audited). Grants themselves are runtime state: never planned, never in the lockfile.
// `gate.server` — the gate itself as the systemd unit agentvm-gate.service with its listener settings — is handled by
// GateServerUnit (server-unit.ts), on the systemd provider's endpoints.
// Invariants: plan is pure (desired config compared with the route read from the table); apply is idempotent (writing
// the same route rewrites nothing); list reports only routes in the table, which only this provider writes.

import { errorDiag, type Diagnostic } from '../../diagnostics/index.js';
import type { Reason } from '../../model/resources.js';
import { EndpointCache } from '../systemd/own-unit.js';
import { auditGateEvent, gateEntry } from '../../gate/audit.js';
import { GateCode } from '../../gate/codes.js';
import { GrantStore } from '../../gate/grants.js';
import { gatePaths } from '../../gate/paths.js';
import {
  normaliseRoute,
  readRouteTable,
  routeDigest,
  routeFromConfig,
  routeKey,
  routeProblems,
  writeRouteTable,
  type GateRoute,
} from '../../gate/routes.js';
import type {
  ApplyRequest,
  ApplyResponse,
  ExpandRequest,
  ExpandResponse,
  HostContext,
  ListRequest,
  ListResponse,
  PlanRequest,
  PlanResponse,
  Provider,
  ReadRequest,
  ReadResponse,
  ValidateRequest,
  ValidateResponse,
} from '../provider.js';
import { expandGate } from './expand.js';
import type { UnitScope } from '../systemd/analyze.js';
import { defaultEndpoint } from '../systemd/provider.js';
import type { SystemdEndpoint } from '../systemd/systemctl.js';
import { GATE_SERVER_ADDRESS, GateServerUnit } from './server-unit.js';

export const GATE_ADDRESS_PREFIX = 'gate.';
export { GATE_SERVER_ADDRESS };

export interface GateProviderOptions {
  /** The manager agentvm-gate.service lives in, per scope. Default: the systemd provider's defaultEndpoint. */
  endpoint?: (host: HostContext, scope: UnitScope) => SystemdEndpoint;
  /** How long apply waits for a (re)started gate to listen. Default 15 s. */
  startTimeoutMs?: number;
}

function namesOf(address: string): { workload: string; preview: string } | undefined {
  const m = /^gate\.([a-z][a-z0-9-]{0,62})\.([a-z][a-z0-9-]{0,62})$/.exec(address);
  return m ? { workload: m[1]!, preview: m[2]! } : undefined;
}

function badAddress(address: string): Diagnostic {
  return errorDiag(GateCode.invalidConfig, `${address} is not gate.<workload>.<preview>.`, { address });
}

export class GateProvider implements Provider {
  readonly type = 'gate';
  readonly addressPrefix = GATE_ADDRESS_PREFIX;

  expand(req: ExpandRequest): ExpandResponse {
    return expandGate(req);
  }
  private readonly endpoints = new EndpointCache();
  private readonly server: GateServerUnit;

  constructor(options: GateProviderOptions = {}) {
    this.server = new GateServerUnit({
      endpointFor: (host, scope) => this.endpointFor(host, scope, options.endpoint ?? defaultEndpoint),
      ...(options.startTimeoutMs ? { startTimeoutMs: options.startTimeoutMs } : {}),
    });
  }

  /** One endpoint per root and scope, so unit paths and accounts are resolved once. */
  private endpointFor(
    host: HostContext,
    scope: UnitScope,
    make: (host: HostContext, scope: UnitScope) => SystemdEndpoint,
  ): SystemdEndpoint {
    return this.endpoints.get(host, scope, make);
  }

  validate(req: ValidateRequest): ValidateResponse {
    if (req.resource.address === GATE_SERVER_ADDRESS)
      return { diagnostics: this.server.validate(req.resource.config, req.resource.address) };
    const names = namesOf(req.resource.address);
    if (!names) return { diagnostics: [badAddress(req.resource.address)] };
    return { diagnostics: routeFromConfig(req.resource.config, names.workload, req.resource.address).diagnostics };
  }

  async read(req: ReadRequest): Promise<ReadResponse> {
    if (req.address === GATE_SERVER_ADDRESS) return this.server.read(req);
    const names = namesOf(req.address);
    if (!names)
      return {
        live: { address: req.address, provider: this.type, exists: false },
        diagnostics: [badAddress(req.address)],
      };
    let route: GateRoute | undefined;
    try {
      route = readRouteTable(gatePaths(req.host.root).routes).routes[routeKey(names.workload, names.preview)];
    } catch (error) {
      return {
        live: { address: req.address, provider: this.type, exists: false },
        diagnostics: [
          errorDiag(GateCode.invalidState, (error as Error).message, {
            address: req.address,
            detail: 'Move the file aside and apply again: apply rewrites the route table from the manifests.',
          }),
        ],
      };
    }
    if (!route) return { live: { address: req.address, provider: this.type, exists: false }, diagnostics: [] };
    return {
      live: {
        address: req.address,
        provider: this.type,
        exists: true,
        identity: routeKey(route.workload, route.preview),
        digest: routeDigest(route),
        attributes: { route: normaliseRoute(route) as unknown as Record<string, unknown> },
      },
      diagnostics: [],
    };
  }

  plan(req: PlanRequest): PlanResponse {
    if (req.address === GATE_SERVER_ADDRESS) return this.server.plan(req);
    const { address, desired, live, locked } = req;
    const drift: Reason[] = [];
    if (locked && !live.exists)
      drift.push({ code: 'live-missing', message: "The preview route is missing from the gate's route table." });
    if (locked && live.exists && live.digest !== locked.digest)
      drift.push({ code: 'live-modified', message: 'The preview route differs from what was applied.' });
    if (!desired) {
      if (!live.exists && !locked) return { action: 'noop', effect: 'none', reasons: [], drift, diagnostics: [] };
      return {
        action: 'delete',
        effect: 'none',
        reasons: [
          {
            code: 'removed',
            message: 'The preview is no longer declared: its route and every grant of it are removed.',
          },
        ],
        drift,
        diagnostics: [],
      };
    }
    const names = namesOf(address);
    const parsed = names
      ? routeFromConfig(desired.config, names.workload, address)
      : { diagnostics: [badAddress(address)] };
    if (!parsed.route) return { action: 'noop', effect: 'none', reasons: [], drift, diagnostics: [] }; // validate reports it
    if (!live.exists) {
      return {
        action: 'create',
        effect: 'none',
        reasons: [
          locked
            ? { code: 'live-missing', message: 'The route was applied but is missing from the route table.' }
            : {
                code: 'new',
                message: `A new preview route ${parsed.route.workload}/${parsed.route.preview} (no grants until someone runs \`agentvm gate grant\`).`,
              },
        ],
        drift,
        diagnostics: [],
      };
    }
    if (live.digest !== routeDigest(parsed.route)) {
      const before = (live.attributes?.route ?? {}) as Partial<GateRoute>;
      const changed = (['upstream', 'maxTtl', 'grantees'] as const).filter(
        (k) => JSON.stringify(before[k]) !== JSON.stringify(parsed.route![k]),
      );
      return {
        action: 'update',
        effect: 'reload',
        reasons: [
          {
            code: 'config-changed',
            message: `The route's ${changed.length ? changed.join(', ') : 'configuration'} changed; the gate picks it up on its next request (existing grants stay, checked against the new grantees).`,
          },
        ],
        drift,
        diagnostics: [],
      };
    }
    return { action: 'noop', effect: 'none', reasons: [], drift, diagnostics: [] };
  }

  async apply(req: ApplyRequest): Promise<ApplyResponse> {
    if (req.change.address === GATE_SERVER_ADDRESS) return this.server.apply(req);
    const { change, host } = req;
    const names = namesOf(change.address);
    if (!names) return { diagnostics: [badAddress(change.address)] };
    const paths = gatePaths(host.root);
    const key = routeKey(names.workload, names.preview);
    // Synchronous read-modify-write: concurrent applies of gate resources in this process cannot interleave it.
    const table = readRouteTable(paths.routes);
    if (change.action === 'delete') {
      const existed = key in table.routes;
      delete table.routes[key];
      table.host = host.host;
      writeRouteTable(paths.routes, table);
      const store = new GrantStore(paths.grants);
      const removed = store.all().filter((g) => g.workload === names.workload && g.preview === names.preview);
      for (const g of removed) store.remove(g.id);
      if (existed || removed.length) {
        auditGateEvent(
          paths.audit,
          gateEntry(
            host.host,
            'gate.route-delete',
            'ok',
            { preview: key, reason: `route removed with ${removed.length} grant(s)` },
            { address: change.address },
          ),
        );
      }
      req.progress?.(`${change.address}: route ${key} removed with ${removed.length} grant(s)`);
      return { diagnostics: [] };
    }
    if (!change.desired)
      return {
        diagnostics: [
          errorDiag(
            GateCode.invalidConfig,
            `Change ${change.action} of ${change.address} carries no desired configuration.`,
            { address: change.address },
          ),
        ],
      };
    const parsed = routeFromConfig(change.desired.config, names.workload, change.address);
    if (!parsed.route) return { diagnostics: parsed.diagnostics };
    const current = table.routes[key];
    if (
      !current ||
      routeProblems(current).length ||
      routeDigest(current) !== routeDigest(parsed.route) ||
      table.host !== host.host
    ) {
      table.routes[key] = parsed.route;
      table.host = host.host;
      writeRouteTable(paths.routes, table);
      req.progress?.(
        `${change.address}: route ${key} → ${'port' in parsed.route.upstream ? `127.0.0.1:${parsed.route.upstream.port}` : `socket ${parsed.route.upstream.socket}`}`,
      );
    }
    return {
      locked: {
        address: change.address,
        provider: this.type,
        workload: names.workload,
        identity: key,
        digest: routeDigest(parsed.route),
      },
      diagnostics: [],
    };
  }

  async list(req: ListRequest): Promise<ListResponse> {
    const server = await this.server.list(req.host);
    try {
      const table = readRouteTable(gatePaths(req.host.root).routes);
      return {
        owned: [
          ...server,
          ...Object.values(table.routes).map((r) => ({
            address: `gate.${r.workload}.${r.preview}`,
            identity: routeKey(r.workload, r.preview),
            digest: routeDigest(r),
          })),
        ],
        diagnostics: [],
      };
    } catch (error) {
      return { owned: server, diagnostics: [errorDiag(GateCode.invalidState, (error as Error).message)] };
    }
  }
}
