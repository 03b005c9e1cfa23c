// The `gate.server` resource: the host's preview gate as its own systemd unit, agentvm-gate.service, plus the listener
// settings it serves with (`<gate dir>/server.json`, from the host spec's `spec.gate`). expand.ts emits it for a host
// with at least one preview; every route depends on it; without previews a plan deletes it.
// The unit lives in the host's systemd scope and reuses the systemd provider's endpoints (system / user /
// AGENTVM_SYSTEMD_USER / offline under --root): online it is enabled and (re)started, and apply waits until the server
// has written its listener record; offline (a root other than `/`, or no running manager) the files are written and
// the unit enabled, nothing starts.
// Invariants:
//   - plan is pure: read() returns the context the unit would be rendered in (node binary, bin/run.js, the root as the
//     manager sees it, the host), so plan renders the desired unit and compares digests without I/O.
//   - Only a unit file marked `X-AgentvmOwner=gate.server` is stopped, removed or listed as ours.
//   - The digest covers the unit text and the settings: a port change restarts the unit even though its text is equal.

import { createHash } from 'node:crypto';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { errorDiag, type Diagnostic } from '../../diagnostics/index.js';
import type { LiveResource, Reason } from '../../model/resources.js';
import { HOST_WORKLOAD } from '../../model/index.js';
import { canonicalJson } from '../../model/canonical-json.js';
import { GateCode } from '../../gate/codes.js';
import { readListenerRecord } from '../../gate/listener.js';
import { gatePaths } from '../../gate/paths.js';
import {
  normaliseServerSettings,
  readServerSettings,
  serverSettingsProblems,
  writeServerSettings,
  type GateServerSettings,
} from '../../gate/routes.js';
import { agentvmBin, GATE_OWNER_KEY, GATE_UNIT, renderGateUnit } from '../../gate/unit.js';
import type {
  ApplyRequest,
  ApplyResponse,
  HostContext,
  PlanRequest,
  PlanResponse,
  ReadRequest,
  ReadResponse,
} from '../provider.js';
import type { UnitScope } from '../systemd/analyze.js';
import { mkdirOwned } from '../systemd/provider.js';
import { replaceFile } from '../../support/replace-file.js';
import { managerPath, type SystemdEndpoint } from '../systemd/systemctl.js';
import {
  findOwnedUnit,
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
import { GateServerCode } from './codes.js';
import { prepareGateState } from './state-access.js';

/** Must equal engine/expand.ts GATE_SERVER_ADDRESS (a test holds them together). */
export const GATE_SERVER_ADDRESS = 'gate.server';

/** The desired config expand.ts gives `gate.server`. */
export interface GateServerConfig {
  address: string;
  port: number;
  tls: { cert: string; key: string } | null;
  /** The public origin behind a TLS-terminating proxy, or null. */
  publicUrl: string | null;
  /** `path` routing (the opt-in) or null: host routing. */
  routing?: 'host' | 'path' | null;
  /** The gate domain (host routing), or null: the default. */
  domain?: string | null;
  scope: UnitScope;
}

/** What rendering the unit needs besides the config: facts of this agentvm and host, read in read(). */
export interface ServerRenderContext {
  node: string;
  bin: string;
  /** The host root as the service manager sees it. */
  root: string;
  host: string;
  scope: UnitScope;
}

/** read()'s findings, in LiveResource.attributes (plain JSON). */
export interface LiveGateServer {
  context: ServerRenderContext;
  mode: 'online' | 'offline';
  unitFile: string;
  /** sha256 of the unit file's text; null when there is none. */
  unitDigest: string | null;
  /** The unit file carries `X-AgentvmOwner=gate.server`. */
  owned: boolean;
  settings: GateServerSettings | null;
  /** ActiveState online (null offline or without a unit). */
  active: string | null;
}

export function parseServerConfig(
  config: Record<string, unknown>,
  address: string,
): { config?: GateServerConfig; diagnostics: Diagnostic[] } {
  const problems = serverSettingsProblems({
    host: 'h',
    address: config.address,
    port: config.port,
    tls: config.tls ?? null,
    publicUrl: config.publicUrl ?? null,
    routing: config.routing ?? null,
    domain: config.domain ?? null,
  });
  if (config.scope !== 'system' && config.scope !== 'user') problems.push('scope must be system or user');
  if (problems.length) {
    return {
      diagnostics: [
        errorDiag(GateCode.invalidConfig, `${address}: ${problems.join('; ')}.`, {
          address,
          detail: 'The gate listener comes from the host spec (`spec.gate`); fix it there and plan again.',
        }),
      ],
    };
  }
  const tls = config.tls as { cert: string; key: string } | null | undefined;
  return {
    config: {
      address: config.address as string,
      port: config.port as number,
      tls: tls ? { cert: tls.cert, key: tls.key } : null,
      publicUrl: typeof config.publicUrl === 'string' ? config.publicUrl : null,
      routing: config.routing === 'path' ? 'path' : null,
      domain: typeof config.domain === 'string' ? config.domain : null,
      scope: config.scope as UnitScope,
    },
    diagnostics: [],
  };
}

function settingsOf(config: GateServerConfig, host: string): GateServerSettings {
  return normaliseServerSettings({
    version: 1,
    host,
    address: config.address,
    port: config.port,
    tls: config.tls,
    publicUrl: config.publicUrl,
    routing: config.routing ?? null,
    domain: config.domain ?? null,
  });
}

const sha256 = (text: string): string => `sha256:${createHash('sha256').update(text).digest('hex')}`;

/** The resource digest: unit text and settings together (what the lockfile records and drift compares). */
export function serverDigest(unitDigest: string | null, settings: GateServerSettings | null): string {
  return sha256(canonicalJson({ unit: unitDigest, settings }));
}

function render(config: GateServerConfig, ctx: ServerRenderContext): { text?: string; diagnostics: Diagnostic[] } {
  return renderGateUnit({
    node: ctx.node,
    bin: ctx.bin,
    root: ctx.root,
    host: ctx.host,
    scope: config.scope,
    owner: GATE_SERVER_ADDRESS,
  });
}

function isLiveGateServer(value: unknown): value is LiveGateServer {
  return typeof value === 'object' && value !== null && 'context' in value && 'unitDigest' in value;
}

const unitOwner = (file: string) => readOwnedUnit(file, GATE_OWNER_KEY);
const show = (endpoint: SystemdEndpoint, props: string[]) => showUnit(endpoint, GATE_UNIT, props);
/** Runs systemctl; a failure becomes an error diagnostic (false). */
const ctl = (endpoint: SystemdEndpoint, args: string[], diagnostics: Diagnostic[]) =>
  systemctlStep(endpoint, args, diagnostics, GateServerCode.systemctl, GATE_SERVER_ADDRESS);

export interface GateServerUnitOptions {
  /** The systemd endpoint of a host and scope (shared with the routes' provider instance). */
  endpointFor(host: HostContext, scope: UnitScope): SystemdEndpoint;
  /** How long apply waits for a (re)started gate to record its listener. Default 15 s. */
  startTimeoutMs?: number;
}

export class GateServerUnit {
  constructor(private readonly options: GateServerUnitOptions) {}

  validate(config: Record<string, unknown>, address: string): Diagnostic[] {
    const parsed = parseServerConfig(config, address);
    if (!parsed.config) return parsed.diagnostics;
    const ctx: ServerRenderContext = {
      node: process.execPath,
      bin: agentvmBin(),
      root: '/',
      host: 'host',
      scope: parsed.config.scope,
    };
    return render(parsed.config, ctx).diagnostics;
  }

  private context(host: HostContext, endpoint: SystemdEndpoint): ServerRenderContext {
    return {
      node: process.execPath,
      bin: agentvmBin(),
      root: managerPath(endpoint, path.resolve(host.root)),
      host: host.host,
      scope: endpoint.scope,
    };
  }

  private async readAt(host: HostContext, endpoint: SystemdEndpoint): Promise<LiveGateServer & { exists: boolean }> {
    const unitFile = path.join(endpoint.unitDir, GATE_UNIT);
    const unit = await unitOwner(unitFile);
    let settings: GateServerSettings | null = null;
    try {
      settings = readServerSettings(gatePaths(host.root).server) ?? null;
    } catch {
      settings = null; // not ours: apply rewrites it
    }
    const active =
      unit && endpoint.mode === 'online' ? ((await show(endpoint, ['ActiveState'])).ActiveState ?? null) : null;
    return {
      exists: unit !== undefined,
      context: this.context(host, endpoint),
      mode: endpoint.mode,
      unitFile,
      unitDigest: unit ? sha256(unit.text) : null,
      owned: unit?.owner === GATE_SERVER_ADDRESS,
      settings,
      active,
    };
  }

  async read(req: ReadRequest): Promise<ReadResponse> {
    const { host, address } = req;
    const known = scopeOf(req.desired?.config, req.locked);
    let found: (LiveGateServer & { exists: boolean }) | undefined;
    try {
      for (const scope of known ? [known] : (['system', 'user'] as const)) {
        found = await this.readAt(host, this.options.endpointFor(host, scope));
        if (found.exists) break;
      }
    } catch (error) {
      return {
        live: { address, provider: 'gate', exists: false },
        diagnostics: [errorDiag(GateServerCode.account, `${address}: ${(error as Error).message}`, { address })],
      };
    }
    const { exists, ...attributes } = found!;
    const live: LiveResource = {
      address,
      provider: 'gate',
      exists,
      ...(exists ? { identity: GATE_UNIT, digest: serverDigest(attributes.unitDigest, attributes.settings) } : {}),
      attributes: attributes as unknown as Record<string, unknown>,
    };
    return { live, diagnostics: [] };
  }

  plan(req: PlanRequest): PlanResponse {
    const { address, desired, live, locked } = req;
    const liveServer = isLiveGateServer(live.attributes) ? live.attributes : undefined;
    const stopped =
      live.exists &&
      liveServer?.mode === 'online' &&
      liveServer.active !== 'active' &&
      liveServer.active !== 'activating' &&
      liveServer.active !== 'reloading';
    const drift: Reason[] = [];
    if (locked && !live.exists)
      drift.push({ code: 'live-missing', message: `${GATE_UNIT} is missing from the unit directory.` });
    if (locked && live.exists && live.digest !== locked.digest)
      drift.push({
        code: 'live-modified',
        message: `${GATE_UNIT} or the gate's server.json differs from what was applied.`,
      });
    if (locked && stopped)
      drift.push({
        code: 'live-modified',
        message: `${GATE_UNIT} is not running (${liveServer?.active ?? 'unknown'}).`,
      });
    if (!desired)
      return planRemoval(
        live,
        locked,
        drift,
        `No preview is declared for this host any more: ${GATE_UNIT} is stopped, disabled and removed.`,
      );
    const parsed = parseServerConfig(desired.config, address);
    if (!parsed.config) return { action: 'noop', effect: 'none', reasons: [], drift, diagnostics: [] }; // validate reports it
    const listen = `${parsed.config.address}:${parsed.config.port}${parsed.config.tls ? ' (HTTPS)' : ' (HTTP, loopback only)'}`;
    if (!live.exists || !liveServer) {
      return {
        action: 'create',
        effect: 'none',
        reasons: [
          locked
            ? { code: 'live-missing', message: `${GATE_UNIT} was applied but is missing.` }
            : { code: 'new', message: `Install and start the preview gate ${GATE_UNIT} on ${listen}.` },
        ],
        drift,
        diagnostics: [],
      };
    }
    const rendered = render(parsed.config, liveServer.context);
    if (!rendered.text)
      return { action: 'noop', effect: 'none', reasons: [], drift, diagnostics: rendered.diagnostics };
    const settings = settingsOf(parsed.config, liveServer.context.host);
    const changed: string[] = [];
    if (sha256(rendered.text) !== liveServer.unitDigest) changed.push('the unit file');
    if (canonicalJson(settings) !== canonicalJson(liveServer.settings))
      changed.push(`the listener settings (${listen})`);
    const reasons: Reason[] = [];
    if (changed.length)
      reasons.push({
        code:
          locked && live.digest !== locked.digest && serverDigest(sha256(rendered.text), settings) === locked.digest
            ? 'live-modified'
            : 'config-changed',
        message: `${changed.join(' and ')} changed: ${GATE_UNIT} is restarted (grants and sessions survive: they are on disk).`,
      });
    if (stopped)
      reasons.push({
        code: 'live-modified',
        message: `${GATE_UNIT} is not running (${liveServer.active ?? 'unknown'}): it is started.`,
      });
    if (!reasons.length) return { action: 'noop', effect: 'none', reasons: [], drift, diagnostics: [] };
    return { action: 'update', effect: 'restart', reasons, drift, diagnostics: [] };
  }

  async apply(req: ApplyRequest): Promise<ApplyResponse> {
    const { change, host } = req;
    const progress = req.progress ?? (() => {});
    if (change.action === 'delete') return this.remove(host, scopeOf(undefined, req.locked), progress);
    if (!change.desired)
      return {
        diagnostics: [
          errorDiag(
            GateCode.invalidConfig,
            `Change ${change.action} of ${GATE_SERVER_ADDRESS} carries no desired configuration.`,
            { address: GATE_SERVER_ADDRESS },
          ),
        ],
      };
    const parsed = parseServerConfig(change.desired.config, GATE_SERVER_ADDRESS);
    if (!parsed.config) return { diagnostics: parsed.diagnostics };
    const config = parsed.config;
    let endpoint: SystemdEndpoint;
    try {
      endpoint = this.options.endpointFor(host, config.scope);
    } catch (error) {
      return {
        diagnostics: [
          errorDiag(GateServerCode.account, `${GATE_SERVER_ADDRESS}: ${(error as Error).message}`, {
            address: GATE_SERVER_ADDRESS,
          }),
        ],
      };
    }
    const ctx = this.context(host, endpoint);
    const rendered = render(config, ctx);
    if (!rendered.text) return { diagnostics: rendered.diagnostics };
    const settings = settingsOf(config, host.host);
    const paths = gatePaths(host.root);
    const diagnostics: Diagnostic[] = [];

    // 1. State the server reads and writes, reachable by the account it runs as; then its settings.
    for (const m of prepareGateState(paths, host.root, endpoint.fileOwner)) progress(`${GATE_SERVER_ADDRESS}: ${m}`);
    let current: GateServerSettings | undefined;
    try {
      current = readServerSettings(paths.server);
    } catch {
      current = undefined;
    }
    const settingsChanged = !current || canonicalJson(current) !== canonicalJson(settings);
    if (settingsChanged) {
      progress(
        `${GATE_SERVER_ADDRESS}: writing ${paths.server} (${settings.address}:${settings.port}${settings.tls ? ', TLS' : ', no TLS: loopback only'})`,
      );
      writeServerSettings(paths.server, settings);
    }

    // 2. The unit file.
    const unitFile = path.join(endpoint.unitDir, GATE_UNIT);
    const before = await unitOwner(unitFile);
    const unitChanged = before?.text !== rendered.text;
    if (unitChanged) {
      progress(`${GATE_SERVER_ADDRESS}: writing ${unitFile}`);
      await mkdirOwned(endpoint.unitDir, '.', endpoint.fileOwner);
      await replaceFile(unitFile, rendered.text, { owner: endpoint.fileOwner });
    }
    const locked = {
      address: GATE_SERVER_ADDRESS,
      provider: 'gate',
      // A host-level resource belongs to no workload: the lockfile records the reserved (host).
      workload: HOST_WORKLOAD,
      identity: GATE_UNIT,
      digest: serverDigest(sha256(rendered.text), settings),
      attributes: { scope: config.scope, unit: GATE_UNIT, config: { ...config } },
    };

    if (endpoint.mode === 'offline') {
      if (!(await ctl(endpoint, ['enable', GATE_UNIT], diagnostics))) return { diagnostics };
      progress(
        `${GATE_SERVER_ADDRESS}: ${GATE_UNIT} rendered and enabled offline (${endpoint.unitDir}); it starts when the manager does`,
      );
      return { locked, diagnostics };
    }

    // 3. The manager: load, enable, and (re)start when anything it runs with changed or it is not running.
    if (unitChanged && !(await ctl(endpoint, ['daemon-reload'], diagnostics))) return { diagnostics };
    const state = await show(endpoint, ['UnitFileState', 'ActiveState', 'MainPID']);
    if (state.UnitFileState !== 'enabled' && !(await ctl(endpoint, ['enable', GATE_UNIT], diagnostics)))
      return { diagnostics };
    const running = state.ActiveState === 'active';
    if (!running || unitChanged || settingsChanged) {
      if (state.ActiveState === 'failed') await endpoint.systemctl(['reset-failed', GATE_UNIT]);
      progress(`${GATE_SERVER_ADDRESS}: ${running ? 'restarting' : 'starting'} ${GATE_UNIT}`);
      if (!(await ctl(endpoint, ['restart', GATE_UNIT], diagnostics))) return { diagnostics };
      // Until the unit's main process has written the listener record (it does so once it listens), or it failed.
      const previousPid = running ? Number(state.MainPID) : 0;
      const up = await waitUnitServing(
        endpoint,
        GATE_UNIT,
        (pid) => pid !== previousPid && readListenerRecord(paths.listener)?.pid === pid,
        this.options.startTimeoutMs ?? 15_000,
      );
      if (!up.ok) {
        return {
          diagnostics: [
            errorDiag(
              GateServerCode.startFailed,
              `${GATE_SERVER_ADDRESS}: ${GATE_UNIT} did not come up listening on ${settings.address}:${settings.port} (${up.why}).`,
              {
                address: GATE_SERVER_ADDRESS,
                detail:
                  'Common causes: the port is taken (host spec spec.gate.port), a TLS file reference cannot be read by the account the gate runs as, or that account cannot reach the host root. Run `agentvm gate serve --root <root> --host <host>` by hand as that account to see the error.',
              },
            ),
          ],
        };
      }
      progress(
        `${GATE_SERVER_ADDRESS}: ${GATE_UNIT} listening on ${settings.address}:${settings.port} (main PID ${up.pid})`,
      );
    }
    return { locked, diagnostics };
  }

  /** delete: stop, disable and remove our unit file (in the recorded scope, else wherever it is ours), then server.json. */
  private async remove(
    host: HostContext,
    known: UnitScope | undefined,
    progress: (m: string) => void,
  ): Promise<ApplyResponse> {
    const { removed, diagnostics } = await removeOwnedUnit({
      endpoints: resolvableEndpoints((scope) => this.options.endpointFor(host, scope), scopesToSearch(known)),
      unit: GATE_UNIT,
      address: GATE_SERVER_ADDRESS,
      ownerKey: GATE_OWNER_KEY,
      code: GateServerCode.systemctl,
      progress,
    });
    if (!removed) return { diagnostics };
    await rm(gatePaths(host.root).server, { force: true });
    return { diagnostics };
  }

  /** Our unit file in either scope: `gate.server` as owned (orphan detection). */
  async list(host: HostContext): Promise<Array<{ address: string; identity: string }>> {
    const endpoints = resolvableEndpoints((scope) => this.options.endpointFor(host, scope), scopesToSearch(undefined));
    return (await findOwnedUnit(endpoints, GATE_UNIT, GATE_SERVER_ADDRESS, GATE_OWNER_KEY))
      ? [{ address: GATE_SERVER_ADDRESS, identity: GATE_UNIT }]
      : [];
  }
}
