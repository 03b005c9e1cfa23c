// McpProvider (`mcp`, addresses `mcp.<workload>.<profile>`): each profile's MCP gateway (decisions/0022) as a unit of
// the host's systemd scope, agentvm-mcp-<workload>.<profile>.service, serving the profile's socket
// <root>/run/agentvm/mcp/<address>/mcp.sock — bound into the profile's unit, its only way to its declared servers —
// from the settings apply writes to <root>/var/lib/agentvm/mcp/<address>.json (servers, pins, and the sandbox every
// stdio server's transient unit gets: the tier's hardening, no network, an exec allowlist of the server's program).
// HTTP servers are reached through the egress proxy, where the gateway is a caller of its own whose allowlist is the
// contract's MCP URLs — taken out of the profile's allowlist (providers/egress/expand.ts), so the profile cannot
// reach those servers around its gateway.
// Effects: any change (pins, servers, unit) restarts the gateway — the profile's open MCP sessions drop, the profile
// does not restart. A gateway that is not running, or whose files differ from what apply wrote, is drift.
// Invariants: plan is pure (read() returns the render context and the settings seen); only a unit marked
// X-AgentvmOwner=<address> is stopped, removed or listed as ours; settings are written before the unit (re)starts,
// and apply returns only once status.json shows the new settings served by the unit's main process.

import { createHash } from 'node:crypto';
import { chownSync, mkdirSync, readdirSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { errorDiag, type Diagnostic } from '../../diagnostics/index.js';
import { canonicalJson } from '../../model/canonical-json.js';
import type { LiveResource, Reason } from '../../model/resources.js';
import { mcpPaths, mcpUnitName, readSettings, readStatus, settingsDigest, type McpSettings } from '../../mcp/paths.js';
import { agentvmBin } from '../../gate/unit.js';
import { egressPaths } from '../../egress/paths.js';
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
import type { UnitScope } from '../systemd/analyze.js';
import {
  EndpointCache,
  planRemoval,
  readOwnedUnit,
  removeOwnedUnit,
  resolvableEndpoints,
  scopeOf,
  scopesToSearch,
  showUnit,
  systemctlStep,
  waitUnitServing,
} from '../systemd/own-unit.js';
import { entrypointProgram, execDirectives, resolveExec } from '../systemd/exec-allowlist.js';
import { hardeningFor, type RiskTier } from '../systemd/gateway-unit.js';
import { defaultEndpoint, mkdirOwned } from '../systemd/provider.js';
import { replaceFile } from '../../support/replace-file.js';
import { hostPathOf, managerPath, type SystemdEndpoint } from '../systemd/systemctl.js';
import { McpCode } from './codes.js';
import { expandMcpGateways, type McpServerConfig } from './expand.js';
import { OWNER_KEY, renderMcpUnit } from './unit.js';

export interface McpGatewayConfig {
  workload: string;
  profile: string;
  scope: UnitScope;
  riskTier: RiskTier;
  releaseId: string;
  servers: McpServerConfig[];
}

interface RenderContext {
  node: string;
  bin: string;
  root: string;
  releasesDir: string;
}

interface LiveMcpGateway {
  context: RenderContext;
  mode: 'online' | 'offline';
  unitDigest: string | null;
  settings: McpSettings | null;
  active: string | null;
}

const NAME = /^[a-z][a-z0-9-]{0,62}$/;
const sha256 = (s: string): string => `sha256:${createHash('sha256').update(s).digest('hex')}`;
const digestOf = (unit: string | null, settings: McpSettings | null): string =>
  sha256(`${unit ?? '-'}\n${settings ? settingsDigest(settings) : '-'}`);
const configDigest = (c: McpGatewayConfig): string => sha256(canonicalJson(c));

export function parseMcpConfig(
  config: Record<string, unknown>,
  address: string,
): { config?: McpGatewayConfig; diagnostics: Diagnostic[] } {
  const c = config as Partial<McpGatewayConfig>;
  const ok =
    typeof c.workload === 'string' &&
    NAME.test(c.workload) &&
    typeof c.profile === 'string' &&
    NAME.test(c.profile) &&
    address === `mcp.${c.workload}.${c.profile}` &&
    (c.scope === 'system' || c.scope === 'user') &&
    ['low', 'moderate', 'high', 'critical'].includes(String(c.riskTier)) &&
    typeof c.releaseId === 'string' &&
    /^[A-Za-z0-9._@+-]+$/.test(c.releaseId) &&
    Array.isArray(c.servers) &&
    c.servers.every(
      (s) =>
        typeof s?.name === 'string' &&
        Array.isArray(s.tools) &&
        Array.isArray(s.command) !== (typeof s.url === 'string'),
    );
  if (!ok)
    return {
      diagnostics: [
        errorDiag(McpCode.invalidConfig, `${address}: the MCP gateway configuration is malformed.`, {
          address,
          detail:
            "It is made by agentvm from the workload's contract (spec.tools, kind: mcp); re-plan from the repository.",
        }),
      ],
    };
  return { config: c as McpGatewayConfig, diagnostics: [] };
}

/**
 * The properties of every stdio server's transient unit: the workload tier's hardening (no more rights than its
 * contract), no network at all (a stdio server's only channel is its pipe to the gateway), and an exec allowlist of
 * the servers' programs and their libraries. Reads the host (the allowlist), so it runs in apply only.
 */
async function sandboxOf(
  config: McpGatewayConfig,
  releaseDir: string,
  endpoint: SystemdEndpoint,
): Promise<Array<[string, string]>> {
  const net = new Set(['PrivateNetwork', 'RestrictAddressFamilies']);
  const hardening = hardeningFor(config.riskTier, config.scope, { privateNetwork: true }).filter(([k]) => !net.has(k));
  const files = new Set<string>();
  const dirs = new Set<string>();
  for (const s of config.servers) {
    if (!s.command) continue;
    const facts = await resolveExec({
      entrypoint: entrypointProgram(s.command, releaseDir),
      programs: [],
      releaseDir,
      reload: false,
      toHost: (p) => hostPathOf(endpoint, p),
    });
    facts.files.forEach((f) => files.add(f));
    facts.dirs.forEach((d) => dirs.add(d));
  }
  const exec = execDirectives({
    programs: [],
    releaseDir,
    entrypoint: null,
    facts: { files: [...files].sort(), dirs: [...dirs].sort(), programs: [] },
    runtimeDirs: [],
  });
  return [
    ...hardening,
    ['PrivateNetwork', 'yes'],
    ['RestrictAddressFamilies', 'AF_UNIX'],
    ['IPAddressDeny', 'any'],
    ...exec,
  ];
}

export interface McpProviderOptions {
  endpoint?: (host: HostContext, scope: UnitScope) => SystemdEndpoint;
  startTimeoutMs?: number;
}

export class McpProvider implements Provider {
  readonly type = 'mcp';
  readonly addressPrefix = 'mcp.';
  private readonly endpoints = new EndpointCache();

  constructor(private readonly options: McpProviderOptions = {}) {}

  expand(req: ExpandRequest): ExpandResponse {
    return expandMcpGateways(req);
  }

  private endpointFor(host: HostContext, scope: UnitScope): SystemdEndpoint {
    return this.endpoints.get(host, scope, this.options.endpoint ?? defaultEndpoint);
  }

  private context(host: HostContext, endpoint: SystemdEndpoint): RenderContext {
    return {
      node: process.execPath,
      bin: agentvmBin(),
      root: managerPath(endpoint, path.resolve(host.root)),
      releasesDir: managerPath(endpoint, host.paths.releases),
    };
  }

  validate(req: ValidateRequest): ValidateResponse {
    return { diagnostics: parseMcpConfig(req.resource.config, req.resource.address).diagnostics };
  }

  async read(req: ReadRequest): Promise<ReadResponse> {
    const { host, address } = req;
    const names = namesOf(address);
    const known = scopeOf(req.desired?.config, req.locked);
    if (!names) return { live: { address, provider: this.type, exists: false }, diagnostics: [] };
    let found: { exists: boolean; live: LiveMcpGateway } | undefined;
    try {
      for (const scope of known ? [known] : (['system', 'user'] as const)) {
        found = await this.readAt(
          host,
          this.endpointFor(host, scope),
          address,
          mcpUnitName(names.workload, names.profile),
        );
        if (found.exists) break;
      }
    } catch (error) {
      return {
        live: { address, provider: this.type, exists: false },
        diagnostics: [errorDiag(McpCode.account, `${address}: ${(error as Error).message}`, { address })],
      };
    }
    const { exists, live } = found!;
    const out: LiveResource = {
      address,
      provider: this.type,
      exists,
      ...(exists
        ? { identity: mcpUnitName(names.workload, names.profile), digest: digestOf(live.unitDigest, live.settings) }
        : {}),
      attributes: live as unknown as Record<string, unknown>,
    };
    return { live: out, diagnostics: [] };
  }

  private async readAt(
    host: HostContext,
    endpoint: SystemdEndpoint,
    address: string,
    unit: string,
  ): Promise<{ exists: boolean; live: LiveMcpGateway }> {
    const file = await unitOwner(path.join(endpoint.unitDir, unit));
    let settings: McpSettings | null = null;
    try {
      settings = readSettings(mcpPaths(host.root).settings(address)) ?? null;
    } catch {
      settings = null;
    }
    const active =
      file && endpoint.mode === 'online' ? ((await show(endpoint, unit, ['ActiveState'])).ActiveState ?? null) : null;
    return {
      exists: file?.owner === address,
      live: {
        context: this.context(host, endpoint),
        mode: endpoint.mode,
        unitDigest: file ? sha256(file.text) : null,
        settings,
        active,
      },
    };
  }

  plan(req: PlanRequest): PlanResponse {
    const { address, desired, live, locked } = req;
    const l = live.attributes as unknown as LiveMcpGateway | undefined;
    const unit = live.identity ?? (desired ? String(desired.identity) : address);
    const drift: Reason[] = [];
    const stopped = live.exists && l?.mode === 'online' && l.active !== 'active' && l.active !== 'activating';
    if (locked && !live.exists)
      drift.push({ code: 'live-missing', message: `${unit} is missing from the unit directory.` });
    if (locked && live.exists && live.digest !== locked.digest)
      drift.push({ code: 'live-modified', message: `${unit} or its settings differ from what was applied.` });
    if (locked && stopped)
      drift.push({
        code: 'live-modified',
        message: `${unit} is not running (${l?.active ?? 'unknown'}): the profile cannot reach its MCP tools.`,
      });
    if (!desired)
      return planRemoval(
        live,
        locked,
        drift,
        `The profile declares no MCP server any more: ${unit} is stopped, disabled and removed.`,
      );
    const parsed = parseMcpConfig(desired.config, address);
    if (!parsed.config) return { action: 'noop', effect: 'none', reasons: [], drift, diagnostics: [] }; // validate reports it
    const servers = parsed.config.servers.map((s) => s.name).join(', ');
    if (!live.exists || !l)
      return {
        action: 'create',
        effect: 'none',
        reasons: [
          {
            code: locked ? 'live-missing' : 'new',
            message: `Install and start the MCP gateway ${unit} for ${servers}: the profile's only way to them, pinned and audited.`,
          },
        ],
        drift,
        diagnostics: [],
      };
    const rendered = renderMcpUnit({ ...l.context, address, scope: parsed.config.scope });
    if (!rendered.text)
      return { action: 'noop', effect: 'none', reasons: [], drift, diagnostics: rendered.diagnostics };
    const reasons: Reason[] = [];
    if (sha256(rendered.text) !== l.unitDigest)
      reasons.push({
        code: 'config-changed',
        message: `${unit} changed: it is restarted (the profile's open MCP sessions drop).`,
      });
    if (l.settings?.configDigest !== configDigest(parsed.config))
      reasons.push({
        code: 'config-changed',
        message: `The MCP servers or pins of ${address} changed: the gateway restarts with them (the profile does not).`,
      });
    if (stopped)
      reasons.push({
        code: 'live-modified',
        message: `${unit} is not running (${l.active ?? 'unknown'}): it is started.`,
      });
    if (!reasons.length) return { action: 'noop', effect: 'none', reasons: [], drift, diagnostics: [] };
    return { action: 'update', effect: 'restart', reasons, drift, diagnostics: [] };
  }

  async apply(req: ApplyRequest): Promise<ApplyResponse> {
    const { change, host } = req;
    const address = change.address;
    const progress = req.progress ?? (() => {});
    if (change.action === 'delete') return this.remove(host, address, scopeOf(undefined, req.locked), progress);
    const parsed = change.desired
      ? parseMcpConfig(change.desired.config, address)
      : { diagnostics: [] as Diagnostic[] };
    if (!parsed.config)
      return {
        diagnostics: parsed.diagnostics.length
          ? parsed.diagnostics
          : [errorDiag(McpCode.invalidConfig, `${address}: no desired configuration.`, { address })],
      };
    const config = parsed.config;
    const unit = mcpUnitName(config.workload, config.profile);
    let endpoint: SystemdEndpoint;
    try {
      endpoint = this.endpointFor(host, config.scope);
    } catch (error) {
      return { diagnostics: [errorDiag(McpCode.account, `${address}: ${(error as Error).message}`, { address })] };
    }
    const ctx = this.context(host, endpoint);
    const rendered = renderMcpUnit({ ...ctx, address, scope: config.scope });
    if (!rendered.text) return { diagnostics: rendered.diagnostics };
    const paths = mcpPaths(host.root);
    const releaseDir = path.posix.join(ctx.releasesDir, config.workload, config.releaseId);
    const settings: McpSettings = {
      version: 1,
      host: host.host,
      workload: config.workload,
      profile: config.profile,
      scope: config.scope,
      configDigest: configDigest(config),
      releaseDir,
      socket: managerPath(endpoint, paths.socket(address)),
      egressSocket: config.servers.some((s) => s.url !== undefined)
        ? managerPath(endpoint, egressPaths(host.root).callerSocket(address))
        : null,
      servers: config.servers,
      sandbox: await sandboxOf(config, releaseDir, endpoint),
    };
    const digest = settingsDigest(settings);
    const diagnostics: Diagnostic[] = [];

    // 1. The directories the gateway writes (its status, its socket directory), owned by its account; the settings.
    for (const dir of [paths.dir, paths.sockets, paths.socketDir(address)]) {
      mkdirSync(dir, { recursive: true, mode: 0o755 });
      if (endpoint.fileOwner) chownSync(dir, endpoint.fileOwner.uid, endpoint.fileOwner.gid);
    }
    let before: McpSettings | undefined;
    try {
      before = readSettings(paths.settings(address));
    } catch {
      before = undefined;
    }
    const settingsChanged = !before || settingsDigest(before) !== digest;
    if (settingsChanged) await replaceFile(paths.settings(address), `${JSON.stringify(settings, null, 2)}\n`);
    // 2. The unit.
    const unitFile = path.join(endpoint.unitDir, unit);
    const old = await unitOwner(unitFile);
    const unitChanged = old?.text !== rendered.text;
    if (unitChanged) {
      await mkdirOwned(endpoint.unitDir, '.', endpoint.fileOwner);
      await replaceFile(unitFile, rendered.text, { owner: endpoint.fileOwner });
    }
    const locked = {
      address,
      provider: this.type,
      workload: config.workload,
      identity: unit,
      digest: digestOf(sha256(rendered.text), settings),
      attributes: { scope: config.scope, unit },
    };
    if (endpoint.mode === 'offline') {
      if (!(await ctl(endpoint, ['enable', unit], address, diagnostics))) return { diagnostics };
      progress(`${address}: ${unit} rendered and enabled offline; it starts when the manager does`);
      return { locked, diagnostics };
    }
    // 3. The manager: (re)start unless the running gateway already serves exactly these settings.
    if (unitChanged && !(await ctl(endpoint, ['daemon-reload'], address, diagnostics))) return { diagnostics };
    const state = await show(endpoint, unit, ['UnitFileState', 'ActiveState', 'MainPID']);
    if (state.UnitFileState !== 'enabled' && !(await ctl(endpoint, ['enable', unit], address, diagnostics)))
      return { diagnostics };
    const served = readStatus(paths.status(address));
    const fresh = state.ActiveState === 'active' && served?.pid === Number(state.MainPID) && served.digest === digest;
    if (!fresh || unitChanged) {
      if (state.ActiveState === 'failed') await endpoint.systemctl(['reset-failed', unit]);
      progress(`${address}: ${state.ActiveState === 'active' ? 'restarting' : 'starting'} ${unit}`);
      if (!(await ctl(endpoint, ['restart', unit], address, diagnostics))) return { diagnostics };
    }
    const up = await waitUnitServing(
      endpoint,
      unit,
      (pid) => {
        const status = readStatus(paths.status(address));
        return status?.pid === pid && status.digest === digest;
      },
      this.options.startTimeoutMs ?? 30_000,
    );
    if (!up.ok) {
      return {
        diagnostics: [
          errorDiag(McpCode.startFailed, `${address}: ${unit} does not serve its MCP servers (${up.why}).`, {
            address,
            detail: `Run \`agentvm mcp serve --root ${host.root} --address ${address}\` by hand as the account the unit runs as to see the error (a stdio server that does not start, or an HTTP server that does not answer, is the common cause).`,
          }),
        ],
      };
    }
    progress(`${address}: ${unit} serves ${config.servers.length} MCP server(s) (main PID ${up.pid})`);
    return { locked, diagnostics };
  }

  private async remove(
    host: HostContext,
    address: string,
    known: UnitScope | undefined,
    progress: (m: string) => void,
  ): Promise<ApplyResponse> {
    const names = namesOf(address);
    if (!names) return { diagnostics: [] };
    const { removed, diagnostics } = await removeOwnedUnit({
      endpoints: resolvableEndpoints((scope) => this.endpointFor(host, scope), scopesToSearch(known)),
      unit: mcpUnitName(names.workload, names.profile),
      address,
      ownerKey: OWNER_KEY,
      code: McpCode.systemctl,
      progress,
    });
    if (!removed) return { diagnostics };
    const paths = mcpPaths(host.root);
    await rm(paths.settings(address), { force: true });
    await rm(paths.status(address), { force: true });
    await rm(paths.socketDir(address), { recursive: true, force: true });
    return { diagnostics };
  }

  async list(req: ListRequest): Promise<ListResponse> {
    const owned: ListResponse['owned'] = [];
    for (const endpoint of resolvableEndpoints(
      (scope) => this.endpointFor(req.host, scope),
      scopesToSearch(undefined),
    )) {
      let names: string[] = [];
      try {
        names = readdirSync(endpoint.unitDir).filter((n) => /^agentvm-mcp-[a-z0-9-]+\.[a-z0-9-]+\.service$/.test(n));
      } catch {
        continue;
      }
      for (const n of names) {
        const owner = (await unitOwner(path.join(endpoint.unitDir, n)))?.owner;
        if (owner && namesOf(owner) && mcpUnitName(namesOf(owner)!.workload, namesOf(owner)!.profile) === n)
          owned.push({ address: owner, identity: n });
      }
    }
    return { owned, diagnostics: [] };
  }
}

function namesOf(address: string): { workload: string; profile: string } | undefined {
  const m = /^mcp\.([a-z][a-z0-9-]{0,62})\.([a-z][a-z0-9-]{0,62})$/.exec(address);
  return m ? { workload: m[1]!, profile: m[2]! } : undefined;
}

// The unit steps every provider of one of agentvm's own service units takes (systemd/own-unit.ts).
const unitOwner = (file: string) => readOwnedUnit(file, OWNER_KEY);
const show = (endpoint: SystemdEndpoint, unit: string, props: string[]) => showUnit(endpoint, unit, props);
const ctl = (endpoint: SystemdEndpoint, args: string[], address: string, diagnostics: Diagnostic[]) =>
  systemctlStep(endpoint, args, diagnostics, McpCode.systemctl, address);
