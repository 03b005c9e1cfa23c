// SystemdProvider (`systemd`, addresses `unit.<workload>.<profile>`): one explicit gateway service per profile,
// `agent-gateway@<profile>.service`, from the shared template plus the instance's own drop-in (gateway-unit.ts),
// in system or user scope (systemctl.ts), restarted only when what it runs changed (gateway-plan.ts,
// restart-table.ts), health-checked after every (re)start and rolled back to the previously applied release and
// configuration when the check fails (health.ts). The workload's canary profile, when promoted to another release,
// must also hold health for its soak time (`canary.soakSeconds`) or it is rolled back the same way; the other
// profiles' units depend on it (engine/expand.ts), so apply skips them then. User scope acts on the invoking
// account's manager, or on the account named by AGENTVM_SYSTEMD_USER (agentvm run as root on its behalf).
// Invariants:
//   - Only agentvm's files are written or removed: the template, drop-ins marked `X-AgentvmOwner=<address>`, and
//     (when repairing drift) other files named after agentvm's own unit. `list` reports only marked instances.
//   - apply re-reads the host and re-decides: repeating an applied change restarts nothing.
//   - No secret value is read into a response, a lockfile entry or a diagnostic: credentials are references;
//     their contents are only compared in memory (live-unit.ts).

import { existsSync, statSync } from 'node:fs';
import { chown, mkdir, readFile, readdir, realpath, rm, rmdir, unlink } from 'node:fs/promises';
import path from 'node:path';
import { EndpointCache } from './own-unit.js';
import { replaceFile } from '../../support/replace-file.js';
import { errorDiag, userError, warningDiag, type Diagnostic } from '../../diagnostics/index.js';
import type { LiveResource, LockedResource, Reason } from '../../model/resources.js';
import { canonicalJson } from '../../model/canonical-json.js';
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
import { expandGatewayUnits } from './expand.js';
import type { UnitScope } from './analyze.js';
import { SystemdCode } from './codes.js';
import { assessGateway, releaseOf } from './gateway-plan.js';
import {
  DROP_IN_FILE,
  gatewayDiagnostics,
  instanceUnit,
  OWNER_KEY,
  parseGatewayConfig,
  parseUnitAddress,
  renderGateway,
  TEMPLATE_UNIT,
  type GatewayConfig,
  type EgressRenderContext,
  type RenderContext,
  type RenderedGateway,
} from './gateway-unit.js';
import { describeHealth, probe, waitHealthy, type HealthResult } from './health.js';
import { perSnapshot, readGateway, readUnit, unitStat, type LiveGateway } from './live-unit.js';
import { sharedStatIndex, type StatIndex } from '../release/stat-index.js';
import { mcpPinChange } from './mcp-pins.js';
import {
  entrypointProgram,
  ExecMemo,
  programDrift,
  programRefusal,
  resolveExec,
  type ExecFacts,
} from './exec-allowlist.js';
import {
  accountNamed,
  hostPathOf,
  managerPath,
  parseShow,
  SYSTEMD_USER_ENV,
  systemEndpoint,
  userEndpoint,
  type CommandResult,
  type SystemdEndpoint,
} from './systemctl.js';
import { valuesOf } from './unit-file.js';
import {
  dataProblems,
  memoryHostDirs,
  normalizedGrants,
  parseDataGrants,
  parseDataRoot,
  unmounted,
  type DataFacts,
} from './data-mounts.js';
import { mapBounded } from '../../support/concurrency.js';
import { CallBatch } from './batch.js';
import { egressPaths, unitShimPath } from '../../egress/paths.js';
import { deliverStoredCredentials, forgetStoredCredentials, staleStoredCredentials } from './credential-store.js';

export const UNIT_ADDRESS_PREFIX = 'unit.';

export interface SystemdProviderOptions {
  /**
   * The manager a host's units live in, per scope. Default: system scope → systemEndpoint(root); user scope →
   * the invoking account's manager (userEndpoint). Tests pass a real user manager's account.
   */
  endpoint?: (host: HostContext, scope: UnitScope) => SystemdEndpoint;
  /** Pause between health probes. Default 100 ms. */
  healthIntervalMs?: number;
  /** How long a unit without a health check may take to become active. Default 5 s. */
  startTimeoutMs?: number;
  /** Pause between health probes while a promoted canary soaks. Default 1 s (never more than a tenth of the soak). */
  soakIntervalMs?: number;
}

/**
 * System scope: systemEndpoint(root). User scope: the manager of the account named by AGENTVM_SYSTEMD_USER (agentvm
 * run as root on behalf of a service account), else of the invoking account.
 */
export function defaultEndpoint(host: HostContext, scope: UnitScope): SystemdEndpoint {
  if (scope === 'system') return systemEndpoint(host.root);
  const named = process.env[SYSTEMD_USER_ENV];
  if (!named) return userEndpoint({ root: host.root });
  try {
    return userEndpoint({ root: host.root, account: accountNamed(named) });
  } catch (err) {
    throw userError(
      SystemdCode.accountUnknown,
      `${(err as Error).message}.`,
      `Set ${SYSTEMD_USER_ENV} to the account whose user manager runs the gateways (\`getent passwd <name>\` must know it), or unset it to use the invoking account's manager.`,
    );
  }
}

/** Where a unit is rendered when no host was read (validate): the default layout under `/`. */
function validationRenderContext(scope: UnitScope): RenderContext {
  return {
    scope,
    releasesDir: '/var/lib/agentvm/releases',
    runtimeDir: scope === 'system' ? '/run' : '/run/user/1000',
    egress: {
      node: process.execPath,
      shim: unitShimPath(),
      socketsDir: '/run/agentvm/egress',
      credstoreDir: '/var/lib/agentvm/credstore',
      caDir: '/var/lib/agentvm/egress-ca',
    },
  };
}

/** How a unit of this host is confined (decisions/0016): this node, this agentvm's shim, the proxy's sockets as the manager sees them. */
export function egressContextOf(endpoint: SystemdEndpoint, host: HostContext): EgressRenderContext {
  const paths = egressPaths(host.root);
  return {
    node: process.execPath,
    shim: unitShimPath(),
    socketsDir: managerPath(endpoint, paths.sockets),
    credstoreDir: managerPath(endpoint, paths.credstore),
    caDir: managerPath(endpoint, paths.caDir),
  };
}

const TIER_ORDER = ['low', 'moderate', 'high', 'critical'];

export class SystemdProvider implements Provider {
  readonly type = 'systemd';
  readonly addressPrefix = UNIT_ADDRESS_PREFIX;

  expand(req: ExpandRequest): ExpandResponse {
    return expandGatewayUnits(req);
  }
  private readonly endpoints = new EndpointCache();
  private readonly unitDirLocks = new Map<string, Promise<void>>();
  /** Per endpoint: daemon-reload and enable calls of concurrent resources share one systemctl (batch.ts). */
  private readonly batches = new Map<SystemdEndpoint, Record<'daemon-reload' | 'enable' | 'show', CallBatch<string>>>();
  /** The units of this plan or apply share their PATH lookups and program closures (one instance per run). */
  private readonly execMemo = new ExecMemo();
  /**
   * Desired units read() rendered, by the live attributes it returned (plan() derives its render context from those
   * alone) and the canonical JSON of the parsed config they were rendered from: plan() renders each unit once.
   */
  private readonly renders = new WeakMap<object, { config: string; rendered: RenderedGateway }>();

  constructor(private readonly options: SystemdProviderOptions = {}) {}

  /** The endpoint for a host and scope (one per root and scope, so unit paths are computed once). */
  endpointFor(host: HostContext, scope: UnitScope): SystemdEndpoint {
    return this.endpoints.get(host, scope, this.options.endpoint ?? defaultEndpoint);
  }

  validate(req: ValidateRequest): ValidateResponse {
    const { resource } = req;
    const parsed = parseGatewayConfig(resource.config, resource.address);
    if (!parsed.config) return { diagnostics: parsed.diagnostics };
    const config = parsed.config;
    const diagnostics = [
      ...parsed.diagnostics,
      ...gatewayDiagnostics(config, validationRenderContext(config.scope), resource.address),
    ];
    if (config.scope === 'user' && TIER_ORDER.indexOf(config.riskTier) >= TIER_ORDER.indexOf('moderate')) {
      diagnostics.push(
        warningDiag(
          SystemdCode.notEnforced,
          `${resource.address}: in user scope MemoryMax=/TasksMax= are written but not enforced.`,
          {
            address: resource.address,
            detail:
              'A user manager enforces them only with delegated cgroup controllers. The network is confined in both scopes (own namespace, egress through the host proxy: decisions/0016). Run moderate-and-above workloads in system scope for resource limits.',
          },
        ),
      );
    }
    return { diagnostics };
  }

  async read(req: ReadRequest): Promise<ReadResponse> {
    const { host, address } = req;
    const names = parseUnitAddress(address);
    if (!names)
      return {
        live: { address, provider: this.type, exists: false },
        diagnostics: [
          errorDiag(SystemdCode.invalidConfig, `${address} is not unit.<workload>.<profile>.`, { address }),
        ],
      };
    // An orphan (listed, neither desired nor locked) has no recorded scope: look where list found it.
    const known = scopeOf(req.desired?.config, req.locked);
    let scope: UnitScope = known ?? 'system';
    let endpoint = this.endpointFor(host, scope);
    const snapshot = req.snapshot;
    // What the host says about the desired unit besides its files; with a known scope, read before the files, so
    // the unit can be rendered as plan() will render it and its drop-in checked against the stat index (ADR 0027).
    const factsOf = async (ep: SystemdEndpoint) => ({
      exec: await this.execFacts(
        req.desired?.config,
        address,
        ep,
        managerPath(ep, host.paths.releases),
        egressContextOf(ep, host),
      ),
      data: await dataFacts(req.desired?.config, host.root, ep),
    });
    const early = known && req.desired ? await factsOf(endpoint) : undefined;
    const expectation = early ? await this.expectation(req, endpoint, early) : undefined;
    let result = await readGateway({
      endpoint,
      profile: names.profile,
      workload: names.workload,
      releasesDir: managerPath(endpoint, host.paths.releases),
      egress: egressContextOf(endpoint, host),
      ...(snapshot ? { snapshot } : {}),
      ...(expectation ? { index: expectation.index, expected: expectation.render } : {}),
    });
    if (expectation) await expectation.index.save();
    if (!known && !result.exists) {
      const other = this.endpointFor(host, 'user');
      const there = await readGateway({
        endpoint: other,
        profile: names.profile,
        workload: names.workload,
        releasesDir: managerPath(other, host.paths.releases),
        egress: egressContextOf(other, host),
        ...(snapshot ? { snapshot } : {}),
      });
      if (there.exists) [scope, endpoint, result] = ['user', other, there];
    }
    const facts = early ?? (await factsOf(endpoint));
    const diagnostics: Diagnostic[] = [];
    const secrets = req.desired?.config.secrets;
    if (
      scope === 'user' &&
      endpoint.mode === 'online' &&
      Array.isArray(secrets) &&
      secrets.length > 0 &&
      !existsSync(hostPathOf(endpoint, '/run/credentials'))
    ) {
      diagnostics.push(credentialsDirMissing(address));
    }
    // A stored secret (env-file:, injected) rotated at its source is a changed credential: plan re-applies the unit,
    // which refreshes the store (decisions/0023).
    const parsedSecrets = req.desired ? parseGatewayConfig(req.desired.config, address).config?.secrets : undefined;
    if (result.exists && parsedSecrets) {
      for (const name of staleStoredCredentials(egressPaths(host.root).credstore, address, parsedSecrets)) {
        const entry = result.live.credentials.find((c) => c.name === name);
        if (entry) entry.state = 'changed';
        else result.live.credentials.push({ name, state: 'changed' });
      }
    }
    const live: LiveResource = {
      address,
      provider: this.type,
      exists: result.exists,
      ...(result.exists ? { identity: `${names.workload}/${names.profile}` } : {}),
      ...(result.digest ? { digest: result.digest } : {}),
      attributes: {
        ...result.live,
        exec: facts.exec,
        // Project data and memory (ADR 0024): what the host lacks for the grants, and where the memory is kept.
        dataPrefix: managerPath(endpoint, path.resolve(host.root)),
        data: facts.data,
        memory: await existingDirs(memoryHostDirs(endpoint, names.workload, names.profile), snapshot),
      } as unknown as Record<string, unknown>,
    };
    // plan() renders the desired unit in contextOf(these attributes), which is the context it was rendered in here.
    const rendering = expectation?.rendered();
    if (rendering && live.attributes)
      this.renders.set(live.attributes, { config: rendering.config, rendered: rendering.rendered });
    return { live, diagnostics };
  }

  /**
   * The stat index and a once-only render of the desired unit in the context plan() will derive from this read's
   * attributes (renderContextOf with the same pieces); undefined without a usable desired config.
   */
  private async expectation(
    req: ReadRequest,
    endpoint: SystemdEndpoint,
    facts: { exec: ExecFacts | null; data: DataFacts | null },
  ): Promise<
    | {
        index: StatIndex;
        render: () => RenderedGateway | undefined;
        rendered: () => { config: string; rendered: RenderedGateway } | undefined;
      }
    | undefined
  > {
    const config = req.desired ? parseGatewayConfig(req.desired.config, req.address).config : undefined;
    if (!config) return undefined;
    const ctx = renderContextOf({
      scope: endpoint.scope,
      releasesDir: managerPath(endpoint, req.host.paths.releases),
      runtimeDir: endpoint.runtimeDir,
      egress: egressContextOf(endpoint, req.host),
      exec: facts.exec,
      dataPrefix: managerPath(endpoint, path.resolve(req.host.root)),
      data: facts.data,
    });
    let done: { config: string; rendered: RenderedGateway } | null | undefined;
    const render = (): RenderedGateway | undefined => {
      if (done === undefined) {
        const rendered = renderGateway(config, ctx, req.address).rendered;
        done = rendered ? { config: canonicalJson(config), rendered } : null;
      }
      return done?.rendered;
    };
    return {
      index: await sharedStatIndex(req.host.paths.cache, req.snapshot),
      render,
      rendered: () => done ?? undefined,
    };
  }

  plan(req: PlanRequest): PlanResponse {
    const { address, desired, live, locked } = req;
    const liveGateway = isLiveGateway(live.attributes) ? live.attributes : undefined;
    let rendered: RenderedGateway | undefined;
    let desiredConfig: GatewayConfig | undefined;
    let desiredKey: string | undefined;
    const diagnostics: Diagnostic[] = [];
    if (desired) {
      const parsed = parseGatewayConfig(desired.config, address);
      desiredConfig = parsed.config;
      // validate() reports a malformed config; planning it would only repeat that.
      if (!parsed.config) return { action: 'noop', effect: 'none', reasons: [], drift: [], diagnostics: [] };
      // A grant that does not exist on the host is not mounted, and the plan says so.
      diagnostics.push(...dataProblems((live.attributes as { data?: DataFacts | null } | undefined)?.data, address));
      if (!liveGateway) {
        return {
          action: 'create',
          effect: 'restart',
          reasons: [{ code: 'new', message: `${address}: create ${instanceUnit(parsed.config.profile)}` }],
          drift: [],
          diagnostics,
        };
      }
      desiredKey = canonicalJson(parsed.config);
      const memo = this.renders.get(liveGateway);
      const r =
        memo && memo.config === desiredKey
          ? { rendered: memo.rendered, diagnostics: [] }
          : renderGateway(parsed.config, contextOf(liveGateway), address);
      if (!r.rendered) {
        // Errors that only the host's paths cause (validate rendered with the default layout and saw none).
        const valid = gatewayDiagnostics(parsed.config, validationRenderContext(parsed.config.scope), address);
        if (!valid.some((d) => d.severity === 'error'))
          diagnostics.push(...r.diagnostics.filter((d) => d.severity === 'error'));
        return { action: 'noop', effect: 'none', reasons: [], drift: [], diagnostics };
      }
      rendered = r.rendered;
    }
    // What was applied last, rendered where it runs; a lockfile config equal to the desired one (the no-op plan of
    // every unchanged unit) renders to the same unit, so it is not rendered twice.
    // (The lockfile keeps the parsed config, so that is what is compared.)
    const sameAsDesired =
      rendered !== undefined &&
      desiredConfig !== undefined &&
      liveGateway !== undefined &&
      desiredConfig.scope === liveGateway.context.scope &&
      canonicalJson(locked?.attributes?.config ?? null) === (desiredKey ?? canonicalJson(desiredConfig));
    const lockedRendered = liveGateway
      ? sameAsDesired
        ? rendered
        : renderLocked(locked, contextOf(liveGateway), address)
      : undefined;
    const a = assessGateway({
      address,
      ...(rendered ? { rendered } : {}),
      ...(liveGateway ? { live: liveGateway } : {}),
      exists: live.exists,
      ...(live.digest !== undefined ? { liveDigest: live.digest } : {}),
      ...(locked ? { locked } : {}),
      ...(lockedRendered ? { lockedRendered } : {}),
    });
    // A declared program whose bytes changed is drift, and the unit must go through apply, which refuses it.
    const tools =
      rendered && desired
        ? programDrift(parseGatewayConfig(desired.config, address).config?.programs ?? [], execOf(liveGateway), address)
        : [];
    if (tools.length > 0) {
      return {
        action: a.action === 'noop' ? 'update' : a.action,
        effect: a.action === 'noop' ? 'restart' : a.effect,
        reasons: [...a.reasons, ...tools],
        drift: [...a.drift, ...tools],
        diagnostics: [...diagnostics, ...a.diagnostics],
      };
    }
    // MCP pins are not rendered; a change of them alone is recorded by an update that restarts nothing.
    const pins =
      desired && a.action === 'noop' && locked
        ? mcpPinChange(
            parseGatewayConfig(desired.config, address).config?.mcp ?? [],
            (locked.attributes?.config as Record<string, unknown> | undefined)?.mcp,
            address,
          )
        : undefined;
    if (pins)
      return {
        action: 'update',
        effect: 'none',
        reasons: [pins],
        drift: a.drift,
        diagnostics: [...diagnostics, ...a.diagnostics],
      };
    // Removing a profile never removes its memory: the plan says where it stays, and how to delete it on purpose.
    const kept = !desired && a.action === 'delete' ? memoryKept(liveGateway, address) : [];
    return {
      action: a.action,
      effect: a.effect,
      reasons: [...a.reasons, ...kept],
      drift: a.drift,
      diagnostics: [...diagnostics, ...a.diagnostics],
    };
  }

  async apply(req: ApplyRequest): Promise<ApplyResponse> {
    const { change, host } = req;
    const progress = req.progress ?? (() => {});
    const names = parseUnitAddress(change.address);
    if (!names)
      return {
        diagnostics: [
          errorDiag(SystemdCode.invalidConfig, `${change.address} is not unit.<workload>.<profile>.`, {
            address: change.address,
          }),
        ],
      };
    if (change.action === 'delete') {
      const known = scopeOf(undefined, req.locked);
      return this.remove(host, change.address, names.profile, known ? [known] : ['system', 'user'], progress);
    }
    if (!change.desired) {
      return {
        diagnostics: [
          errorDiag(
            SystemdCode.invalidConfig,
            `Change ${change.action} of ${change.address} carries no desired configuration.`,
            { address: change.address },
          ),
        ],
      };
    }
    const parsed = parseGatewayConfig(change.desired.config, change.address);
    if (!parsed.config) return { diagnostics: parsed.diagnostics };
    const config = parsed.config;
    const endpoint = this.endpointFor(host, config.scope);
    const releasesDir = managerPath(endpoint, host.paths.releases);
    const egressCtx = egressContextOf(endpoint, host);
    const exec = await this.execFacts(change.desired.config, change.address, endpoint, releasesDir, egressCtx);
    const data = await dataFacts(change.desired.config, host.root, endpoint);
    const ctx: RenderContext = {
      scope: config.scope,
      releasesDir,
      runtimeDir: endpoint.runtimeDir,
      exec,
      egress: egressCtx,
      dataPrefix: managerPath(endpoint, path.resolve(host.root)),
      dataMissing: unmounted(data),
    };
    const r = renderGateway(config, ctx, change.address);
    if (!r.rendered) return { diagnostics: r.diagnostics.filter((d) => d.severity === 'error') };
    // Fail closed (decisions/0022): a declared program that does not hash to its pin keeps the unit from running.
    const refused = exec ? programRefusal(config.programs ?? [], exec, change.address) : [];
    if (refused.length > 0)
      return {
        diagnostics: [...refused, ...(await this.stopRefused(endpoint, r.rendered.unit, change.address, progress))],
      };
    const rendered = r.rendered;

    const releaseHostDir = hostPathOf(endpoint, rendered.releaseDir);
    if (!(await isDirectory(releaseHostDir))) {
      return {
        diagnostics: [
          errorDiag(
            SystemdCode.releaseMissing,
            `${change.address}: release ${config.releaseId} is not installed (${releaseHostDir}).`,
            {
              address: change.address,
              detail: `The unit runs only from its release directory. Apply release.${config.workload} first (the unit depends on it).`,
            },
          ),
        ],
      };
    }

    const before = await readGateway({ endpoint, profile: config.profile, workload: config.workload, releasesDir });
    const assessment = assessGateway({
      address: change.address,
      rendered,
      live: before.live,
      exists: before.exists,
      ...(before.digest ? { liveDigest: before.digest } : {}),
      ...(req.locked ? { locked: req.locked } : {}),
    });
    if (assessment.diagnostics.some((d) => d.severity === 'error')) return { diagnostics: assessment.diagnostics };
    const diagnostics: Diagnostic[] = [...assessment.diagnostics, ...dataProblems(data, change.address)];
    if (
      config.scope === 'user' &&
      endpoint.mode === 'online' &&
      rendered.credentials.length > 0 &&
      !existsSync(hostPathOf(endpoint, '/run/credentials'))
    )
      diagnostics.push(credentialsDirMissing(change.address));

    // 0. Credentials the unit loads from agentvm's store (env-file: values, injected secrets' placeholders).
    const stored = deliverStoredCredentials(
      egressPaths(host.root).credstore,
      change.address,
      config.secrets,
      endpoint.fileOwner,
    );
    if (stored.length > 0) return { diagnostics: stored };

    // 1. Files: the template and this profile's drop-in; then every other source of this unit that we may remove.
    const wrote = await this.writeUnitFiles(endpoint, rendered, progress);
    const removed: string[] = [];
    for (const f of before.live.foreign) {
      if (f.removable) {
        progress(`${change.address}: removing second runtime source ${f.path}`);
        await rm(f.path, { force: true });
        await rmdir(path.dirname(f.path)).catch(() => undefined);
        removed.push(f.path);
      } else {
        diagnostics.push(
          errorDiag(
            SystemdCode.foreignSource,
            `${change.address}: ${f.path} also configures ${rendered.unit}, and agentvm may not remove it.`,
            {
              address: change.address,
              detail:
                f.reach === 'prefix'
                  ? 'It is a drop-in shared by other units and changes how the process runs (a second runtime source). Remove those settings from it, or narrow it to the units that need them.'
                  : 'The directory is not writable by agentvm. Remove the file by hand (it is a second runtime source), then apply again.',
            },
          ),
        );
      }
    }

    if (endpoint.mode === 'offline') {
      const enabled = await this.ctlBatched(endpoint, 'enable', rendered.unit, change.address, diagnostics);
      if (enabled)
        progress(
          `${change.address}: ${rendered.unit} rendered and enabled offline (${endpoint.unitDir}); it starts when the manager does`,
        );
      return this.response(change.desired.identity, rendered, config, diagnostics);
    }

    // 2. The manager: load the files, enable the instance, then restart/reload only what the decision says.
    if (wrote || removed.length > 0 || before.live.manager?.needDaemonReload) {
      if (!(await this.ctlBatched(endpoint, 'daemon-reload', '', change.address, diagnostics))) return { diagnostics };
    }
    const state = await this.showBatched(endpoint, rendered.unit);
    if (state.UnitFileState !== 'enabled') {
      if (!(await this.ctlBatched(endpoint, 'enable', rendered.unit, change.address, diagnostics)))
        return { diagnostics };
    }
    const running = state.ActiveState === 'active' || state.ActiveState === 'reloading';
    if (assessment.restart || !running || removed.length > 0) {
      if (state.ActiveState === 'failed') await endpoint.systemctl(['reset-failed', rendered.unit]);
      progress(
        `${change.address}: ${running ? 'restarting' : 'starting'} ${rendered.unit} (release ${config.releaseId})`,
      );
      if (!(await this.ctl(endpoint, ['restart', rendered.unit], change.address, diagnostics, true))) {
        const s = await this.show(endpoint, rendered.unit, ['Result', 'ExecMainStatus']);
        const cause = `${rendered.unit} failed to start (result ${s.Result ?? '?'}, exit status ${s.ExecMainStatus ?? '?'})`;
        diagnostics.push(
          errorDiag(SystemdCode.startFailed, `${change.address}: ${cause}.`, {
            address: change.address,
            detail:
              'Exit status 226 is NAMESPACE (sandboxing), 243 CREDENTIALS (a credential source is missing or unreadable), 200 CHDIR (release dir not reachable), 203 EXEC (program not found).',
          }),
        );
        return withRollback(
          diagnostics,
          await this.rollback(endpoint, rendered, req.locked, ctx, change.address, cause, progress),
        );
      }
      const healthy = await this.checkHealth(endpoint, rendered, progress);
      if (!healthy.ok) {
        diagnostics.push(
          errorDiag(healthy.code, `${change.address}: ${healthy.message}`, {
            address: change.address,
            detail:
              'The unit was (re)started with the new release or configuration and did not become healthy; see the rollback diagnostic for what runs now.',
          }),
        );
        return withRollback(
          diagnostics,
          await this.rollback(endpoint, rendered, req.locked, ctx, change.address, healthy.message, progress),
        );
      }
      // The canary of a promotion (it ran another release before): health must hold for the soak time before the
      // workload's other units, which depend on this one (expand.ts), are touched. A rollback (`agentvm rollback`)
      // restores a release that ran before and is not held back by a soak.
      const promotedFrom = before.exists ? before.live.releaseId : null;
      const isRollback = change.reasons.some((r) => r.code === 'rollback');
      if (
        config.canary?.profile === config.profile &&
        promotedFrom &&
        promotedFrom !== config.releaseId &&
        config.canary.soakSeconds > 0 &&
        !isRollback
      ) {
        const soak = await this.soak(endpoint, rendered, config.canary.soakSeconds, progress);
        if (!soak.ok) {
          const cause = `canary ${rendered.unit} did not hold health for its soak of ${config.canary.soakSeconds} s: ${soak.message}`;
          diagnostics.push(
            errorDiag(SystemdCode.canaryFailed, `${change.address}: ${cause}.`, {
              address: change.address,
              detail: `Release ${config.releaseId} was promoted to the canary profile only; the workload's other profiles were not touched and keep release ${promotedFrom}. See the rollback diagnostic for what the canary runs now.`,
            }),
          );
          return withRollback(
            diagnostics,
            await this.rollback(endpoint, rendered, req.locked, ctx, change.address, cause, progress),
          );
        }
      }
    } else if (
      assessment.reload &&
      rendered.hasReload &&
      assessment.changedKeys.some((k) => k !== 'Service.ExecReload')
    ) {
      // The manager applied the settings on daemon-reload; a workload that reloads is told to re-read them.
      // A newly added ExecReload= alone is no reason to signal the process.
      progress(`${change.address}: reloading ${rendered.unit}`);
      if (!(await this.ctl(endpoint, ['reload', rendered.unit], change.address, diagnostics))) return { diagnostics };
    }
    return this.response(change.desired.identity, rendered, config, diagnostics);
  }

  async list(req: ListRequest): Promise<ListResponse> {
    const owned = new Map<string, { address: string; identity: string }>();
    const index = await sharedStatIndex(req.host.paths.cache, req.snapshot);
    const dirs = new Set<string>();
    for (const scope of ['system', 'user'] as const) {
      try {
        dirs.add(this.endpointFor(req.host, scope).unitDir);
      } catch {
        // A scope that cannot be resolved on this host has no units.
      }
    }
    for (const dir of dirs) {
      let entries: string[];
      try {
        entries = await readdir(dir);
      } catch {
        continue;
      }
      // Drop-ins are read concurrently (and, within a plan, parsed once for list and read alike: ListRequest.snapshot).
      const candidates = entries.sort().flatMap((e) => {
        const m = /^agent-gateway@([a-z][a-z0-9-]{0,62})\.service\.d$/.exec(e);
        return m ? [{ profile: m[1]!, file: path.join(dir, e, DROP_IN_FILE) }] : [];
      });
      const owners = await mapBounded(candidates, LIST_CONCURRENCY, (c) => ownerOf(c.file, req.snapshot, index));
      candidates.forEach((c, i) => {
        const owner = owners[i];
        const names = owner ? parseUnitAddress(owner) : undefined;
        if (owner && names && names.profile === c.profile)
          owned.set(owner, { address: owner, identity: `${names.workload}/${names.profile}` });
      });
    }
    return { owned: [...owned.values()].sort((a, b) => (a.address < b.address ? -1 : 1)), diagnostics: [] };
  }

  // -------------------------------------------------------------------------------------------------------

  /** The exec allowlist of a desired unit resolved on the host (exec-allowlist.ts); null without a usable config. */
  private async execFacts(
    config: Record<string, unknown> | undefined,
    address: string,
    endpoint: SystemdEndpoint,
    releasesDir: string,
    egress: EgressRenderContext | null,
  ): Promise<ExecFacts | null> {
    const parsed = config ? parseGatewayConfig(config, address).config : undefined;
    if (!parsed) return null;
    const releaseDir = path.posix.join(releasesDir, parsed.workload, parsed.releaseId);
    // A confined unit's main process is the node that runs the egress shim in front of the entrypoint: it executes too.
    return resolveExec({
      entrypoint: entrypointProgram(parsed.entrypoint, releaseDir),
      programs: parsed.programs ?? [],
      releaseDir,
      reload: parsed.reload,
      toHost: (p) => hostPathOf(endpoint, p),
      memo: this.execMemo,
      ...(egress ? { also: [egress.node] } : {}),
    });
  }

  /** A unit whose pinned programs changed does not keep running them: it is stopped until apply succeeds. */
  private async stopRefused(
    endpoint: SystemdEndpoint,
    unit: string,
    address: string,
    progress: (m: string) => void,
  ): Promise<Diagnostic[]> {
    if (endpoint.mode !== 'online') return [];
    const state = await this.show(endpoint, unit, ['ActiveState']);
    if (state.ActiveState !== 'active' && state.ActiveState !== 'activating' && state.ActiveState !== 'reloading')
      return [];
    progress(`${address}: stopping ${unit}: a pinned program changed`);
    const diagnostics: Diagnostic[] = [];
    await this.ctl(endpoint, ['stop', unit], address, diagnostics);
    return diagnostics;
  }

  private response(
    identity: string,
    rendered: RenderedGateway,
    config: GatewayConfig,
    diagnostics: Diagnostic[],
  ): ApplyResponse {
    return {
      locked: {
        address: rendered.address,
        provider: this.type,
        workload: config.workload,
        identity,
        digest: rendered.digest,
        // The applied config (references only, never values): the rollback target of the next change.
        attributes: { releaseId: config.releaseId, scope: config.scope, unit: rendered.unit, config: { ...config } },
      },
      diagnostics,
    };
  }

  /**
   * Serialises changes to the shared files of one unit directory within this process: apply runs units in
   * parallel, and removing the last instance's template must not race with another profile being created.
   */
  private withUnitDir<T>(dir: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.unitDirLocks.get(dir) ?? Promise.resolve();
    const next = previous.then(fn, fn);
    this.unitDirLocks.set(
      dir,
      next.then(
        () => undefined,
        () => undefined,
      ),
    );
    return next;
  }

  /** Writes the template and drop-in when their text differs; true when anything was written. */
  private writeUnitFiles(
    endpoint: SystemdEndpoint,
    rendered: RenderedGateway,
    progress: (m: string) => void,
  ): Promise<boolean> {
    return this.withUnitDir(endpoint.unitDir, async () => {
      let wrote = false;
      for (const file of [rendered.template, rendered.dropIn]) {
        const target = path.join(endpoint.unitDir, file.name);
        const current = await readFile(target, 'utf8').catch(() => undefined);
        if (current === file.text) continue;
        progress(`${rendered.address}: writing ${target}`);
        await mkdirOwned(endpoint.unitDir, path.dirname(file.name), endpoint.fileOwner);
        await replaceFile(target, file.text, { owner: endpoint.fileOwner }); // the manager never reads half a unit file
        wrote = true;
      }
      return wrote;
    });
  }

  /**
   * `systemctl daemon-reload` or `systemctl enable <unit>`, coalesced with the same calls of concurrent resources
   * (batch.ts); a failure becomes an error diagnostic of this resource (false), as with ctl.
   */
  private async ctlBatched(
    endpoint: SystemdEndpoint,
    verb: 'daemon-reload' | 'enable',
    unit: string,
    address: string,
    diagnostics: Diagnostic[],
  ): Promise<boolean> {
    const r = await this.batchesOf(endpoint)[verb].submit(unit);
    if (r.code === 0) return true;
    const args = verb === 'enable' ? ['enable', unit] : ['daemon-reload'];
    diagnostics.push(
      errorDiag(SystemdCode.systemctl, `${address}: systemctl ${args.join(' ')} failed (exit ${r.code}).`, {
        address,
        detail: (r.stderr.trim() || r.stdout.trim() || 'no output').slice(0, 2000),
      }),
    );
    return false;
  }

  /** The coalescing batches of one endpoint (batch.ts), made on first use. */
  private batchesOf(endpoint: SystemdEndpoint): Record<'daemon-reload' | 'enable' | 'show', CallBatch<string>> {
    let batches = this.batches.get(endpoint);
    if (!batches) {
      batches = {
        'daemon-reload': new CallBatch<string>(
          () => endpoint.systemctl(['daemon-reload']),
          () => endpoint.systemctl(['daemon-reload']),
        ),
        enable: new CallBatch<string>(
          (units) => endpoint.systemctl(['enable', ...units]),
          (u) => endpoint.systemctl(['enable', u]),
        ),
        show: new CallBatch<string>(
          (units) => endpoint.systemctl(['show', `--property=${SHOWN}`, ...units]),
          (u) => endpoint.systemctl(['show', `--property=${SHOWN}`, u]),
        ),
      };
      this.batches.set(endpoint, batches);
    }
    return batches;
  }

  /**
   * The unit's enablement and state before apply acts on it, read with one `systemctl show u1 u2 …` for the units
   * in flight together (one block per unit, picked by its Id); {} when systemctl fails, as with show().
   */
  private async showBatched(endpoint: SystemdEndpoint, unit: string): Promise<Record<string, string>> {
    const r = await this.batchesOf(endpoint).show.submit(unit);
    if (r.code !== 0) return {};
    for (const block of r.stdout.split(/\n\s*\n/)) {
      const props = parseShow(block);
      if (props.Id === unit) return props;
    }
    // No block names it (an alias, say): ask for this unit alone.
    return this.show(endpoint, unit, ['UnitFileState', 'ActiveState']);
  }

  /** Runs systemctl; a failure becomes an error diagnostic (false). */
  private async ctl(
    endpoint: SystemdEndpoint,
    args: string[],
    address: string,
    diagnostics: Diagnostic[],
    quiet = false,
  ): Promise<boolean> {
    const r: CommandResult = await endpoint.systemctl(args);
    if (r.code === 0) return true;
    if (!quiet) {
      diagnostics.push(
        errorDiag(SystemdCode.systemctl, `${address}: systemctl ${args.join(' ')} failed (exit ${r.code}).`, {
          address,
          detail: (r.stderr.trim() || r.stdout.trim() || 'no output').slice(0, 2000),
        }),
      );
    }
    return false;
  }

  private async show(endpoint: SystemdEndpoint, unit: string, props: string[]): Promise<Record<string, string>> {
    const r = await endpoint.systemctl(['show', unit, `--property=${props.join(',')}`]);
    return r.code === 0 ? parseShow(r.stdout) : {};
  }

  /** After a (re)start: the health check, or (without one) the unit reaching `active`. */
  private async checkHealth(
    endpoint: SystemdEndpoint,
    rendered: RenderedGateway,
    progress: (m: string) => void,
  ): Promise<{ ok: true } | { ok: false; code: string; message: string }> {
    const why = async (): Promise<string> => {
      const s = await this.show(endpoint, rendered.unit, ['ActiveState', 'SubState', 'Result', 'ExecMainStatus']);
      return `${s.ActiveState ?? '?'}/${s.SubState ?? '?'}, result ${s.Result ?? '?'}, exit status ${s.ExecMainStatus ?? '?'}`;
    };
    if (!rendered.health) {
      const deadline = Date.now() + (this.options.startTimeoutMs ?? 5_000);
      for (;;) {
        const s = await this.show(endpoint, rendered.unit, ['ActiveState']);
        if (s.ActiveState === 'active') return { ok: true };
        if (s.ActiveState === 'failed' || Date.now() > deadline)
          return {
            ok: false,
            code: SystemdCode.startFailed,
            message: `${rendered.unit} did not become active (${await why()})`,
          };
        await new Promise((res) => setTimeout(res, 100));
      }
    }
    const h = rendered.health;
    const target = h.socketPath !== undefined ? { socketPath: hostPathOf(endpoint, h.socketPath) } : { port: h.port! };
    const result: HealthResult = await waitHealthy(target, h.path, {
      timeoutMs: h.timeoutSeconds * 1000,
      intervalMs: this.options.healthIntervalMs ?? 100,
      stillRunning: async () => (await this.show(endpoint, rendered.unit, ['ActiveState'])).ActiveState !== 'failed',
    });
    if (result.ok) {
      progress(`${rendered.address}: healthy (${h.path} answered HTTP ${result.status} after ${result.elapsedMs} ms)`);
      return { ok: true };
    }
    const where = h.socketPath !== undefined ? `unix:${h.socketPath}` : `127.0.0.1:${h.port}`;
    return {
      ok: false,
      code: SystemdCode.healthFailed,
      message: `health check GET ${where}${h.path} failed: ${describeHealth(result)} ${result.gaveUp ? 'and the unit failed' : `after ${h.timeoutSeconds} s`} (${await why()})`,
    };
  }

  /**
   * Polls a freshly promoted canary for `soakSeconds`: every probe must answer 2xx (or, without a health check, the
   * unit must stay active), and the main process must stay the same one (a crash restarted by the manager is a
   * failure even when the next process answers).
   */
  private async soak(
    endpoint: SystemdEndpoint,
    rendered: RenderedGateway,
    soakSeconds: number,
    progress: (m: string) => void,
  ): Promise<{ ok: true } | { ok: false; message: string }> {
    const soakMs = soakSeconds * 1000;
    const interval = Math.max(50, Math.min(this.options.soakIntervalMs ?? 1_000, Math.floor(soakMs / 10)));
    const pidOf = async (): Promise<string> => (await this.show(endpoint, rendered.unit, ['MainPID'])).MainPID ?? '0';
    const pid = await pidOf();
    progress(`${rendered.address}: canary soaking for ${soakSeconds} s (main PID ${pid})`);
    const h = rendered.health;
    const target = h
      ? h.socketPath !== undefined
        ? { socketPath: hostPathOf(endpoint, h.socketPath) }
        : { port: h.port! }
      : undefined;
    const started = Date.now();
    let probes = 0;
    for (;;) {
      const s = await this.show(endpoint, rendered.unit, ['ActiveState', 'MainPID']);
      if (s.ActiveState !== 'active')
        return { ok: false, message: `the unit became ${s.ActiveState ?? 'unknown'} after ${Date.now() - started} ms` };
      if (s.MainPID !== pid)
        return {
          ok: false,
          message: `its main process changed (PID ${pid} → ${s.MainPID ?? '?'}) after ${Date.now() - started} ms: it exited and was restarted`,
        };
      if (target && h) {
        const answer = await probe(target, h.path, Math.min(2_000, h.timeoutSeconds * 1000));
        probes++;
        if (answer.status === undefined || answer.status < 200 || answer.status >= 300) {
          return {
            ok: false,
            message: `GET ${h.path} answered ${answer.status !== undefined ? `HTTP ${answer.status}` : (answer.error ?? 'nothing')} after ${Date.now() - started} ms`,
          };
        }
      }
      if (Date.now() - started >= soakMs) break;
      await new Promise((res) => setTimeout(res, Math.min(interval, Math.max(0, soakMs - (Date.now() - started)))));
    }
    progress(`${rendered.address}: canary held health for ${soakSeconds} s${target ? ` (${probes} probes)` : ''}`);
    return { ok: true };
  }

  /** Puts back the previously applied unit (release and config from the lockfile entry), restarts and re-checks it. */
  private async rollback(
    endpoint: SystemdEndpoint,
    failed: RenderedGateway,
    locked: LockedResource | undefined,
    ctx: RenderContext,
    address: string,
    cause: string,
    progress: (m: string) => void,
  ): Promise<Diagnostic[]> {
    const previous = renderLocked(locked, ctx, address);
    if (!previous) {
      return [
        errorDiag(
          SystemdCode.rollbackFailed,
          `${address}: no previously applied release to roll back to; ${failed.unit} stays as applied (${cause}).`,
          {
            address,
            detail:
              'This was the first apply of the unit. Fix the release or configuration and apply again, or remove the profile.',
          },
        ),
      ];
    }
    if (!(await isDirectory(hostPathOf(endpoint, previous.releaseDir)))) {
      return [
        errorDiag(
          SystemdCode.rollbackFailed,
          `${address}: cannot roll back: the previous release ${releaseOf(previous)} is no longer installed.`,
          { address },
        ),
      ];
    }
    progress(`${address}: rolling back to release ${releaseOf(previous)}`);
    await this.writeUnitFiles(endpoint, previous, progress);
    const diagnostics: Diagnostic[] = [];
    if (
      !(await this.ctl(endpoint, ['daemon-reload'], address, diagnostics)) ||
      !(await this.ctl(endpoint, ['restart', previous.unit], address, diagnostics, true))
    ) {
      return [
        ...diagnostics,
        errorDiag(
          SystemdCode.rollbackFailed,
          `${address}: the rollback to release ${releaseOf(previous)} did not start.`,
          { address },
        ),
      ];
    }
    const health = await this.checkHealth(endpoint, previous, progress);
    if (!health.ok) {
      return [
        errorDiag(
          SystemdCode.rollbackFailed,
          `${address}: rolled back to release ${releaseOf(previous)}, which is not healthy either: ${health.message}.`,
          {
            address,
            detail: 'Investigate the host (credentials, ports, dependencies); the unit keeps the previous release.',
          },
        ),
      ];
    }
    return [
      warningDiag(
        SystemdCode.rolledBack,
        `${address}: rolled back to release ${releaseOf(previous)} (the previously applied unit), which is healthy; release ${releaseOf(failed)} was not kept.`,
        {
          address,
          detail: `Cause: ${cause}. The lockfile keeps the previous entry; fix the release or configuration and apply again.`,
        },
      ),
    ];
  }

  /** delete: stop, disable and remove the instance and its drop-in; the template goes with the last instance. */
  private async remove(
    host: HostContext,
    address: string,
    profile: string,
    scopes: UnitScope[],
    progress: (m: string) => void,
  ): Promise<ApplyResponse> {
    const unit = instanceUnit(profile);
    let endpoint: SystemdEndpoint | undefined;
    for (const scope of scopes) {
      const candidate = this.endpointFor(host, scope);
      if ((await ownerOf(path.join(candidate.unitDir, `${unit}.d`, DROP_IN_FILE))) === address) {
        endpoint = candidate;
        break;
      }
    }
    if (!endpoint) return { diagnostics: [] }; // nothing of ours (already removed, or another owner's)
    const dropIn = path.join(endpoint.unitDir, `${unit}.d`, DROP_IN_FILE);
    const diagnostics: Diagnostic[] = [];
    if (endpoint.mode === 'online') {
      progress(`${address}: stopping and disabling ${unit}`);
      if (!(await this.ctl(endpoint, ['stop', unit], address, diagnostics))) return { diagnostics };
    }
    forgetStoredCredentials(egressPaths(host.root).credstore, address);
    if (!(await this.ctl(endpoint, ['disable', unit], address, diagnostics))) return { diagnostics };
    const unitDir = endpoint.unitDir;
    await this.withUnitDir(unitDir, async () => {
      await unlink(dropIn);
      await rmdir(path.dirname(dropIn)).catch(() => undefined); // only when empty: other files there are not ours
      const remaining = (await readdir(unitDir).catch(() => [] as string[])).filter((e) =>
        /^agent-gateway@[a-z][a-z0-9-]*\.service\.d$/.test(e),
      );
      let others = false;
      for (const e of remaining) if ((await ownerOf(path.join(unitDir, e, DROP_IN_FILE))) !== undefined) others = true;
      const template = path.join(unitDir, TEMPLATE_UNIT);
      if (!others && (await ownerOf(template)) !== undefined) {
        progress(`${address}: removing ${template} (no gateway instance left)`);
        await unlink(template);
      }
    });
    if (endpoint.mode === 'online') {
      await this.ctl(endpoint, ['daemon-reload'], address, diagnostics);
      await endpoint.systemctl(['reset-failed', unit]);
    }
    const names = parseUnitAddress(address);
    const memory = names ? await existingDirs(memoryHostDirs(endpoint, names.workload, names.profile)) : [];
    if (memory.length > 0 && names)
      progress(
        `${address}: memory kept at ${memory.join(', ')} (\`agentvm memory purge ${names.workload}\` deletes it)`,
      );
    return { diagnostics };
  }
}

/** The scope the desired config or the lockfile entry names; undefined when neither does (an orphan). */
function scopeOf(
  config: Record<string, unknown> | undefined,
  locked: LockedResource | undefined,
): UnitScope | undefined {
  if (config) return config.scope === 'user' ? 'user' : 'system';
  const s = locked?.attributes?.scope;
  return s === 'user' || s === 'system' ? s : undefined;
}

function contextOf(live: LiveGateway): RenderContext {
  return renderContextOf({
    scope: live.context.scope,
    releasesDir: live.context.releasesDir,
    runtimeDir: live.context.runtimeDir,
    egress: live.context.egress ?? null,
    exec: execOf(live),
    dataPrefix: (live as LiveGateway & { dataPrefix?: string }).dataPrefix,
    data: dataOf(live),
  });
}

/** The render context of a unit from what read() found: contextOf a read's attributes, or read() itself (ADR 0027). */
function renderContextOf(p: {
  scope: UnitScope;
  releasesDir: string;
  runtimeDir: string | null;
  egress: LiveGateway['context']['egress'] | EgressRenderContext;
  exec: ExecFacts | null;
  dataPrefix: string | undefined;
  data: DataFacts | null;
}): RenderContext {
  return {
    scope: p.scope,
    releasesDir: p.releasesDir,
    runtimeDir: p.runtimeDir,
    exec: p.exec,
    egress: p.egress ?? null,
    ...(p.dataPrefix ? { dataPrefix: p.dataPrefix } : {}),
    dataMissing: unmounted(p.data),
  };
}

/** The data facts read() attached to the live attributes (data-mounts.ts). */
function dataOf(live: LiveGateway | undefined): DataFacts | null {
  return (live as (LiveGateway & { data?: DataFacts | null }) | undefined)?.data ?? null;
}

/** The plan's reason for a removed profile whose memory exists: kept, where, and the command that deletes it. */
function memoryKept(live: LiveGateway | undefined, address: string): Reason[] {
  const dirs = (live as (LiveGateway & { memory?: string[] }) | undefined)?.memory ?? [];
  const names = parseUnitAddress(address);
  if (dirs.length === 0 || !names) return [];
  return [
    {
      code: 'removed',
      message: `${address}: its memory is kept at ${dirs.join(', ')}; \`agentvm memory purge ${names.workload} --host <host>\` deletes it once the workload is gone`,
    },
  ];
}

/** What the host lacks for a desired config's data grants (host paths); null without grants or a usable config. */
async function dataFacts(
  config: Record<string, unknown> | undefined,
  root: string,
  endpoint: SystemdEndpoint,
): Promise<DataFacts | null> {
  const grants = parseDataGrants(config?.data);
  const dataRoot = parseDataRoot(config?.dataRoot);
  if (!grants || grants.length === 0 || !dataRoot) return null;
  const hostRoot = path.join(path.resolve(root), dataRoot);
  const missing: DataFacts['missing'] = [];
  const escapes: NonNullable<DataFacts['escapes']> = [];
  const realRoot = await realpath(hostRoot).catch(() => hostRoot);
  for (const g of normalizedGrants(grants)) {
    const hostPath = path.join(hostRoot, g.path);
    if (!existsSync(hostPath)) {
      missing.push({ path: g.path, access: g.access });
      continue;
    }
    // Every component below the root must be a real directory: systemd follows a symlink when it binds.
    const real = await realpath(hostPath).catch(() => '');
    if (real !== path.join(realRoot, g.path))
      escapes.push({ path: g.path, access: g.access, target: real || '(unresolvable)' });
  }
  return {
    root: hostRoot,
    missing,
    escapes,
    rootMissing: !existsSync(hostRoot),
    parentMissing: !existsSync(hostPathOf(endpoint, '/srv')),
  };
}

/**
 * The directories of `dirs` (memory dirs, `<base>/agentvm-memory/<workload>/<profile>`) that exist. With a plan's
 * snapshot, the `agentvm-memory` directory two levels up is looked at once per plan: where it is not a directory, none
 * of the units' memory dirs under it can be (most hosts: no unit has memory yet), and they are not stat'ed one by one.
 */
async function existingDirs(dirs: readonly string[], snapshot?: Map<string, unknown>): Promise<string[]> {
  const out: string[] = [];
  for (const d of dirs) {
    const base = path.dirname(path.dirname(d));
    if (snapshot && !(await perSnapshot(snapshot, `systemd.memory-base:${base}`, () => isDirectory(base)))) continue;
    if (await isDirectory(d)) out.push(d);
  }
  return out;
}

/** The exec facts read() attached to the live attributes (exec-allowlist.ts). */
function execOf(live: LiveGateway | undefined): ExecFacts | null {
  const exec = (live as (LiveGateway & { exec?: ExecFacts | null }) | undefined)?.exec;
  return exec ?? null;
}

/** True when a `unit.*` resource was read from a running service manager (not rendered offline into a root). */
export function gatewayOnline(live: LiveResource | undefined): boolean {
  return live?.exists === true && isLiveGateway(live.attributes) && live.attributes.context.mode === 'online';
}

function isLiveGateway(value: unknown): value is LiveGateway {
  return typeof value === 'object' && value !== null && 'context' in value && 'foreign' in value;
}

/** The lockfile entry's config rendered in `ctx`: what was applied last. */
function renderLocked(
  locked: LockedResource | undefined,
  ctx: RenderContext,
  address: string,
): RenderedGateway | undefined {
  const config = locked?.attributes?.config;
  if (typeof config !== 'object' || config === null) return undefined;
  const parsed = parseGatewayConfig(config as Record<string, unknown>, address);
  if (!parsed.config) return undefined;
  return renderGateway({ ...parsed.config, scope: ctx.scope }, ctx, address).rendered;
}

function credentialsDirMissing(address: string): Diagnostic {
  return warningDiag(
    SystemdCode.hostPrerequisite,
    `${address}: /run/credentials does not exist; a user manager cannot create it, so sandboxed units with credentials fail with 226/NAMESPACE.`,
    {
      address,
      detail:
        'Create it once as root (mkdir -m 0755 /run/credentials, or a tmpfiles.d entry). PID 1 systemd creates it on a normally booted host.',
    },
  );
}

/** The X-AgentvmOwner of a unit file, or undefined (missing file, no mark). */
/**
 * X-AgentvmOwner of a drop-in. A drop-in whose stat the index holds was, when recorded, exactly agentvm's rendering
 * for the address in the entry's tag (live-unit.ts readDropIn records nothing else): that is its owner, unread.
 */
async function ownerOf(file: string, snapshot?: Map<string, unknown>, index?: StatIndex): Promise<string | undefined> {
  try {
    if (index) {
      const st = await unitStat(file, snapshot);
      const tag = st ? index.lookupEntry(st)?.tag : undefined;
      if (tag !== undefined) return tag;
    }
    const unit = await readUnit(file, snapshot);
    return unit ? valuesOf(unit, 'Unit', OWNER_KEY).at(-1) : undefined;
  } catch {
    return undefined;
  }
}

const LIST_CONCURRENCY = 16;
/** What apply reads of a unit before acting on it (Id picks a unit's block out of a batched `systemctl show`). */
const SHOWN = 'Id,UnitFileState,ActiveState';

async function isDirectory(p: string): Promise<boolean> {
  try {
    return statSync(p).isDirectory(); // synchronous: once per unit per plan (ADR 0027)
  } catch {
    return false;
  }
}

/** mkdir -p of `relative` below `base` (and `base` itself), chowning what it creates. */
export async function mkdirOwned(
  base: string,
  relative: string,
  owner: { uid: number; gid: number } | undefined,
): Promise<void> {
  const missing: string[] = [];
  let p = relative === '.' ? base : path.join(base, relative);
  while (!existsSync(p)) {
    missing.unshift(p);
    p = path.dirname(p);
  }
  for (const dir of missing) {
    await mkdir(dir, { mode: 0o755 }).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'EEXIST') throw err;
    });
    if (owner) await chown(dir, owner.uid, owner.gid);
  }
}

/**
 * The response of an apply whose change failed and was undone here: what the undo reported, and — said explicitly,
 * so apply audits it without reading diagnostic codes — whether the unit is healthy on the release before (`ok`).
 */
function withRollback(diagnostics: Diagnostic[], undo: Diagnostic[]): ApplyResponse {
  const failed = undo.find((d) => d.code === SystemdCode.rollbackFailed);
  const done = undo.find((d) => d.code === SystemdCode.rolledBack);
  const outcome = failed ?? done;
  return {
    diagnostics: [...diagnostics, ...undo],
    ...(outcome ? { rolledBack: { result: failed ? 'failed' : 'ok', detail: outcome.summary } } : {}),
  };
}
