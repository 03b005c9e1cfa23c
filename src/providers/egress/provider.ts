// EgressProvider (`egress`, the one address `egress.server`): the host's egress proxy, agentvm-egress.service, and the
// rules it serves (<root>/var/lib/agentvm/egress/rules.json). expand.ts emits it for every host with at least one
// service profile: every profile is a caller (its socket, its allowlist — empty means every request is refused and
// audited — and its inbound bridge), and every unit depends on it, so the proxy serves a profile's socket and port
// before the unit starts. A host without profiles has no egress.server; a plan deletes the one it had.
// Effects: a new rules digest is a reload (SIGHUP; the proxy swaps allowlists in place, other profiles' sockets and
// open connections stay); a changed unit file, or a proxy that is not running, is a restart.
// Invariants: plan is pure (read() returns the render context); only a unit marked X-AgentvmOwner=egress.server is
// stopped, removed or listed as ours; rules.json is written before the proxy is (re)loaded, and apply returns only
// once status.json shows the new digest served by the unit's main process.

import { createHash } from 'node:crypto';
import { chmodSync, chownSync, closeSync, mkdirSync, openSync, statSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { errorDiag, warningDiag, type Diagnostic } from '../../diagnostics/index.js';
import { HOST_WORKLOAD } from '../../model/index.js';
import type { LiveResource, Reason } from '../../model/resources.js';
import { egressPaths, EGRESS_UNIT, INBOUND_SOCKET } from '../../egress/paths.js';
import { readRulesFile, readStatusFile, rulesDigest, writeRulesFile, type RulesFile } from '../../egress/settings.js';
import type { EgressEntry } from '../../egress/rules.js';
import { ensureCa, ensureLeaf } from '../../egress/ca.js';
import type { InjectionRoute } from '../../egress/injection.js';
import { agentvmBin } from '../../gate/unit.js';
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
import { expandEgress } from './expand.js';
import type { UnitScope } from '../systemd/analyze.js';
import { defaultEndpoint, mkdirOwned } from '../systemd/provider.js';
import { replaceFile } from '../../support/replace-file.js';
import { managerPath, type SystemdEndpoint } from '../systemd/systemctl.js';
import {
  EndpointCache,
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
import { EgressCode } from './codes.js';
import { EGRESS_SERVER_ADDRESS, OWNER_KEY, renderEgressUnit } from './unit.js';

export { EGRESS_SERVER_ADDRESS };

/** One profile as expand.ts describes it to the proxy. */
export interface EgressCallerConfig {
  id: string;
  workload: string;
  profile: string;
  entries: EgressEntry[];
  listenPort: number | null;
  /** Injected secrets of this profile (decisions/0023). */
  inject?: InjectionRoute[];
}

export interface EgressServerConfig {
  scope: UnitScope;
  resolvers: string[];
  callers: EgressCallerConfig[];
  /** host spec.egress.upstreamTrustAnchors. */
  upstreamTrustAnchors?: string[];
}

/** Facts of this agentvm and host the unit and the rules are rendered with (read in read(), so plan stays pure). */
export interface EgressRenderContext {
  node: string;
  bin: string;
  /** The host root as the manager sees it. */
  root: string;
  host: string;
  scope: UnitScope;
  /** The manager's runtime directory (`%t`), where each unit's RuntimeDirectory (and inbound socket) lives. */
  runtimeDir: string | null;
}

interface LiveEgressServer {
  context: EgressRenderContext;
  mode: 'online' | 'offline';
  unitDigest: string | null;
  rulesDigest: string | null;
  rules: RulesFile | null;
  active: string | null;
}

const sha256 = (s: string): string => `sha256:${createHash('sha256').update(s).digest('hex')}`;
const digestOf = (unit: string | null, rules: string | null): string => sha256(`${unit ?? '-'}\n${rules ?? '-'}`);

export function parseEgressConfig(config: Record<string, unknown>): {
  config?: EgressServerConfig;
  diagnostics: Diagnostic[];
} {
  const { scope, resolvers, callers } = config;
  const ok =
    (scope === 'system' || scope === 'user') &&
    Array.isArray(resolvers) &&
    resolvers.every((r) => typeof r === 'string') &&
    Array.isArray(callers) &&
    callers.every(
      (c) =>
        typeof c === 'object' &&
        c !== null &&
        typeof (c as EgressCallerConfig).id === 'string' &&
        typeof (c as EgressCallerConfig).profile === 'string' &&
        Array.isArray((c as EgressCallerConfig).entries),
    );
  if (!ok)
    return {
      diagnostics: [
        errorDiag(EgressCode.invalidConfig, `${EGRESS_SERVER_ADDRESS}: the egress configuration is malformed.`, {
          address: EGRESS_SERVER_ADDRESS,
          detail: 'It is made by agentvm from the contracts and the host spec; re-plan from the repository.',
        }),
      ],
    };
  return { config: config as unknown as EgressServerConfig, diagnostics: [] };
}

/** The rules file for `config` in `ctx`: socket paths and inbound targets as the proxy (under the manager) sees them. */
export function rulesOf(config: EgressServerConfig, ctx: EgressRenderContext): RulesFile {
  const paths = egressPaths(ctx.root);
  return {
    version: 1,
    host: ctx.host,
    resolvers: [...config.resolvers],
    callers: [...config.callers]
      .sort((a, b) => (a.id < b.id ? -1 : 1))
      .map((c) => ({
        id: c.id,
        workload: c.workload,
        entries: c.entries.map((e) => ({
          host: e.host,
          port: e.port,
          ...(e.protocol ? { protocol: e.protocol } : {}),
        })),
        socket: paths.callerSocket(c.id),
        inbound:
          c.listenPort !== null && ctx.runtimeDir !== null
            ? {
                port: c.listenPort,
                target: path.posix.join(ctx.runtimeDir, 'agent-gateway', c.profile, INBOUND_SOCKET),
              }
            : null,
        ...(c.inject?.length ? { inject: c.inject.map((r) => ({ ...r })) } : {}),
      })),
    ...(config.upstreamTrustAnchors?.length ? { upstreamTrustAnchors: [...config.upstreamTrustAnchors] } : {}),
  };
}

function unitText(ctx: EgressRenderContext): { text?: string; diagnostics: Diagnostic[] } {
  return renderEgressUnit({ node: ctx.node, bin: ctx.bin, root: ctx.root, host: ctx.host, scope: ctx.scope });
}

export interface EgressProviderOptions {
  endpoint?: (host: HostContext, scope: UnitScope) => SystemdEndpoint;
  startTimeoutMs?: number;
}

export class EgressProvider implements Provider {
  readonly type = 'egress';
  readonly addressPrefix = 'egress.';

  expand(req: ExpandRequest): ExpandResponse {
    return expandEgress(req);
  }
  private readonly endpoints = new EndpointCache();

  constructor(private readonly options: EgressProviderOptions = {}) {}

  private endpointFor(host: HostContext, scope: UnitScope): SystemdEndpoint {
    return this.endpoints.get(host, scope, this.options.endpoint ?? defaultEndpoint);
  }

  private context(host: HostContext, endpoint: SystemdEndpoint): EgressRenderContext {
    return {
      node: process.execPath,
      bin: agentvmBin(),
      root: managerPath(endpoint, path.resolve(host.root)),
      host: host.host,
      scope: endpoint.scope,
      runtimeDir: endpoint.runtimeDir,
    };
  }

  validate(req: ValidateRequest): ValidateResponse {
    if (req.resource.address !== EGRESS_SERVER_ADDRESS)
      return {
        diagnostics: [
          errorDiag(EgressCode.invalidConfig, `${req.resource.address} is not ${EGRESS_SERVER_ADDRESS}.`, {
            address: req.resource.address,
          }),
        ],
      };
    return { diagnostics: parseEgressConfig(req.resource.config).diagnostics };
  }

  async read(req: ReadRequest): Promise<ReadResponse> {
    const { host, address } = req;
    const known = scopeOf(req.desired?.config, req.locked);
    let found: { exists: boolean; live: LiveEgressServer } | undefined;
    try {
      for (const scope of known ? [known] : (['system', 'user'] as const)) {
        found = await this.readAt(host, this.endpointFor(host, scope));
        if (found.exists) break;
      }
    } catch (error) {
      return {
        live: { address, provider: this.type, exists: false },
        diagnostics: [errorDiag(EgressCode.account, `${address}: ${(error as Error).message}`, { address })],
      };
    }
    const { exists, live } = found!;
    const out: LiveResource = {
      address,
      provider: this.type,
      exists,
      ...(exists ? { identity: EGRESS_UNIT, digest: digestOf(live.unitDigest, live.rulesDigest) } : {}),
      attributes: live as unknown as Record<string, unknown>,
    };
    return { live: out, diagnostics: [] };
  }

  private async readAt(
    host: HostContext,
    endpoint: SystemdEndpoint,
  ): Promise<{ exists: boolean; live: LiveEgressServer }> {
    const unit = await unitOwner(path.join(endpoint.unitDir, EGRESS_UNIT));
    let rules: RulesFile | null = null;
    try {
      rules = readRulesFile(egressPaths(host.root).rules) ?? null;
    } catch {
      rules = null;
    }
    const active =
      unit && endpoint.mode === 'online' ? ((await show(endpoint, ['ActiveState'])).ActiveState ?? null) : null;
    return {
      exists: unit?.owner === EGRESS_SERVER_ADDRESS,
      live: {
        context: this.context(host, endpoint),
        mode: endpoint.mode,
        unitDigest: unit ? sha256(unit.text) : null,
        rulesDigest: rules ? rulesDigest(rules) : null,
        rules,
        active,
      },
    };
  }

  plan(req: PlanRequest): PlanResponse {
    const { desired, live, locked } = req;
    const l = live.attributes as unknown as LiveEgressServer | undefined;
    const drift: Reason[] = [];
    const stopped =
      live.exists &&
      l?.mode === 'online' &&
      l.active !== 'active' &&
      l.active !== 'activating' &&
      l.active !== 'reloading';
    if (locked && !live.exists)
      drift.push({ code: 'live-missing', message: `${EGRESS_UNIT} is missing from the unit directory.` });
    if (locked && live.exists && live.digest !== locked.digest)
      drift.push({ code: 'live-modified', message: `${EGRESS_UNIT} or its rules.json differs from what was applied.` });
    if (locked && stopped)
      drift.push({
        code: 'live-modified',
        message: `${EGRESS_UNIT} is not running (${l?.active ?? 'unknown'}): no profile can reach the network.`,
      });
    if (!desired)
      return planRemoval(
        live,
        locked,
        drift,
        `No profile runs on this host any more: ${EGRESS_UNIT} is stopped, disabled and removed.`,
      );
    const parsed = parseEgressConfig(desired.config);
    if (!parsed.config || !l) {
      if (!parsed.config) return { action: 'noop', effect: 'none', reasons: [], drift, diagnostics: [] };
    }
    const callers = parsed.config!.callers.length;
    if (!live.exists || !l)
      return {
        action: 'create',
        effect: 'none',
        reasons: [
          {
            code: locked ? 'live-missing' : 'new',
            message: `Install and start the egress proxy ${EGRESS_UNIT} for ${callers} profile(s): their only way out, by name, audited.`,
          },
        ],
        drift,
        diagnostics: [],
      };
    const rendered = unitText(l.context);
    if (!rendered.text)
      return { action: 'noop', effect: 'none', reasons: [], drift, diagnostics: rendered.diagnostics };
    const rules = rulesOf(parsed.config!, l.context);
    const reasons: Reason[] = [];
    let effect: 'reload' | 'restart' = 'reload';
    if (sha256(rendered.text) !== l.unitDigest) {
      reasons.push({
        code: 'config-changed',
        message: `${EGRESS_UNIT} changed: it is restarted (profiles' open connections through it drop).`,
      });
      effect = 'restart';
    }
    if (rulesDigest(rules) !== l.rulesDigest)
      reasons.push({
        code: 'config-changed',
        message: `The egress rules changed (${describeRuleChange(l.rules, rules)}): the proxy reloads them; no profile restarts and open connections stay.`,
      });
    if (stopped) {
      reasons.push({
        code: 'live-modified',
        message: `${EGRESS_UNIT} is not running (${l.active ?? 'unknown'}): it is started.`,
      });
      effect = 'restart';
    }
    if (!reasons.length) return { action: 'noop', effect: 'none', reasons: [], drift, diagnostics: [] };
    return { action: 'update', effect, reasons, drift, diagnostics: [] };
  }

  async apply(req: ApplyRequest): Promise<ApplyResponse> {
    const { change, host } = req;
    const progress = req.progress ?? (() => {});
    if (change.action === 'delete') return this.remove(host, scopeOf(undefined, req.locked), progress);
    const parsed = change.desired ? parseEgressConfig(change.desired.config) : { diagnostics: [] as Diagnostic[] };
    if (!parsed.config)
      return {
        diagnostics: parsed.diagnostics.length
          ? parsed.diagnostics
          : [
              errorDiag(EgressCode.invalidConfig, `${EGRESS_SERVER_ADDRESS}: no desired configuration.`, {
                address: EGRESS_SERVER_ADDRESS,
              }),
            ],
      };
    const config = parsed.config;
    let endpoint: SystemdEndpoint;
    try {
      endpoint = this.endpointFor(host, config.scope);
    } catch (error) {
      return {
        diagnostics: [
          errorDiag(EgressCode.account, `${EGRESS_SERVER_ADDRESS}: ${(error as Error).message}`, {
            address: EGRESS_SERVER_ADDRESS,
          }),
        ],
      };
    }
    const ctx = this.context(host, endpoint);
    const rendered = unitText(ctx);
    if (!rendered.text) return { diagnostics: rendered.diagnostics };
    const rules = rulesOf(config, ctx);
    const digest = rulesDigest(rules);
    const paths = egressPaths(host.root);
    const diagnostics: Diagnostic[] = [];

    // 1. State the proxy writes (status, sockets, the audit log), owned by the account it runs as; then the rules.
    prepareEgressState(paths, host.root, endpoint.fileOwner);
    const tls = issueInjectionCertificates(paths, host.host, config, endpoint.fileOwner);
    if (tls.length) return { diagnostics: tls };
    let current: string | null = null;
    try {
      const r = readRulesFile(paths.rules);
      current = r ? rulesDigest(r) : null;
    } catch {
      current = null;
    }
    const rulesChanged = current !== digest;
    if (rulesChanged) {
      progress(`${EGRESS_SERVER_ADDRESS}: writing ${paths.rules} (${rules.callers.length} caller(s))`);
      writeRulesFile(paths.rules, rules);
    }
    // 2. The unit.
    const unitFile = path.join(endpoint.unitDir, EGRESS_UNIT);
    const before = await unitOwner(unitFile);
    const unitChanged = before?.text !== rendered.text;
    if (unitChanged) {
      await mkdirOwned(endpoint.unitDir, '.', endpoint.fileOwner);
      await replaceFile(unitFile, rendered.text, { owner: endpoint.fileOwner });
    }
    const locked = {
      address: EGRESS_SERVER_ADDRESS,
      provider: this.type,
      workload: HOST_WORKLOAD,
      identity: EGRESS_UNIT,
      digest: digestOf(sha256(rendered.text), digest),
      attributes: { scope: config.scope, unit: EGRESS_UNIT, config: { ...config } },
    };
    if (endpoint.mode === 'offline') {
      if (!(await ctl(endpoint, ['enable', EGRESS_UNIT], diagnostics))) return { diagnostics };
      progress(
        `${EGRESS_SERVER_ADDRESS}: ${EGRESS_UNIT} rendered and enabled offline; it starts when the manager does`,
      );
      return { locked, diagnostics };
    }
    // 3. The manager: restart when the unit changed or it is not running; otherwise reload when only the rules did.
    if (unitChanged && !(await ctl(endpoint, ['daemon-reload'], diagnostics))) return { diagnostics };
    const state = await show(endpoint, ['UnitFileState', 'ActiveState', 'MainPID']);
    if (state.UnitFileState !== 'enabled' && !(await ctl(endpoint, ['enable', EGRESS_UNIT], diagnostics)))
      return { diagnostics };
    const running = state.ActiveState === 'active';
    const served = readStatusFile(paths.status);
    const fresh = running && served?.pid === Number(state.MainPID) && served.digest === digest;
    if (!running || unitChanged) {
      if (state.ActiveState === 'failed') await endpoint.systemctl(['reset-failed', EGRESS_UNIT]);
      progress(`${EGRESS_SERVER_ADDRESS}: ${running ? 'restarting' : 'starting'} ${EGRESS_UNIT}`);
      if (!(await ctl(endpoint, ['restart', EGRESS_UNIT], diagnostics))) return { diagnostics };
    } else if (!fresh) {
      progress(`${EGRESS_SERVER_ADDRESS}: reloading the egress rules (no restart)`);
      if (!(await ctl(endpoint, ['reload', EGRESS_UNIT], diagnostics))) return { diagnostics };
    }
    const up = await waitUnitServing(
      endpoint,
      EGRESS_UNIT,
      (pid) => {
        const status = readStatusFile(paths.status);
        return status?.pid === pid && status.digest === digest;
      },
      this.options.startTimeoutMs ?? 15_000,
    );
    if (!up.ok) {
      return {
        diagnostics: [
          errorDiag(
            EgressCode.startFailed,
            `${EGRESS_SERVER_ADDRESS}: ${EGRESS_UNIT} does not serve the new rules (${up.why}).`,
            {
              address: EGRESS_SERVER_ADDRESS,
              detail: `Run \`agentvm egress serve --root ${host.root} --host ${host.host}\` by hand as the account the unit runs as to see the error (a port of a profile's listener taken by another process is the common cause).`,
            },
          ),
        ],
      };
    }
    progress(`${EGRESS_SERVER_ADDRESS}: ${EGRESS_UNIT} serves ${rules.callers.length} caller(s) (main PID ${up.pid})`);
    for (const f of readStatusFile(paths.status)?.inboundFailures ?? []) {
      const who = rules.callers.find((c) => c.inbound?.port === f.port)?.id ?? 'a profile';
      diagnostics.push(
        warningDiag(
          EgressCode.inboundPortTaken,
          `${EGRESS_SERVER_ADDRESS}: 127.0.0.1:${f.port} (the listener of ${who}) is held by another process on the host (${f.error}): the gate and health checks cannot reach that profile.`,
          {
            address: EGRESS_SERVER_ADDRESS,
            detail:
              "A confined profile listens inside its own namespace; the egress proxy bridges its port from the host's loopback. Stop the process holding the port (`ss -ltnp`) or give the profile another port, and apply again.",
          },
        ),
      );
    }
    return { locked, diagnostics };
  }

  private async remove(
    host: HostContext,
    known: UnitScope | undefined,
    progress: (m: string) => void,
  ): Promise<ApplyResponse> {
    const { removed, diagnostics } = await removeOwnedUnit({
      endpoints: resolvableEndpoints((scope) => this.endpointFor(host, scope), scopesToSearch(known)),
      unit: EGRESS_UNIT,
      address: EGRESS_SERVER_ADDRESS,
      ownerKey: OWNER_KEY,
      code: EgressCode.systemctl,
      progress,
    });
    if (!removed) return { diagnostics };
    const paths = egressPaths(host.root);
    await rm(paths.rules, { force: true });
    await rm(paths.status, { force: true });
    return { diagnostics };
  }

  async list(req: ListRequest): Promise<ListResponse> {
    const endpoints = resolvableEndpoints((scope) => this.endpointFor(req.host, scope), scopesToSearch(undefined));
    return (await findOwnedUnit(endpoints, EGRESS_UNIT, EGRESS_SERVER_ADDRESS, OWNER_KEY))
      ? { owned: [{ address: EGRESS_SERVER_ADDRESS, identity: EGRESS_UNIT }], diagnostics: [] }
      : { owned: [], diagnostics: [] };
  }
}

/** "allowlist of unit.a.b widened: +api.example.com:443; 1 caller added" — what a reviewer needs from a rules diff. */
function describeRuleChange(before: RulesFile | null, after: RulesFile): string {
  const was = new Map((before?.callers ?? []).map((c) => [c.id, c]));
  const parts: string[] = [];
  for (const c of after.callers) {
    const old = was.get(c.id);
    was.delete(c.id);
    if (!old) {
      parts.push(`${c.id} added`);
      continue;
    }
    const key = (e: EgressEntry): string => `${e.host}:${e.port}`;
    const added = c.entries.map(key).filter((k) => !old.entries.map(key).includes(k));
    const removed = old.entries.map(key).filter((k) => !c.entries.map(key).includes(k));
    if (added.length || removed.length)
      parts.push(`${c.id} ${[...added.map((a) => `+${a}`), ...removed.map((r) => `-${r}`)].join(' ')}`);
    else if (JSON.stringify(old.inject ?? []) !== JSON.stringify(c.inject ?? []))
      parts.push(`${c.id} injected credentials changed`);
    else if (JSON.stringify(old) !== JSON.stringify(c)) parts.push(`${c.id} listener changed`);
  }
  for (const id of was.keys()) parts.push(`${id} removed`);
  if (JSON.stringify(before?.resolvers ?? []) !== JSON.stringify(after.resolvers)) parts.push('resolvers changed');
  if (JSON.stringify(before?.upstreamTrustAnchors ?? []) !== JSON.stringify(after.upstreamTrustAnchors ?? []))
    parts.push('upstream trust anchors changed');
  return parts.join('; ') || 'paths';
}

/** The directories the proxy writes, owned by the account it runs as (AGENTVM_SYSTEMD_USER), and the shared audit log. */
function prepareEgressState(
  paths: ReturnType<typeof egressPaths>,
  root: string,
  owner: { uid: number; gid: number } | undefined,
): void {
  const auditDir = path.dirname(paths.audit);
  for (const dir of [paths.dir, paths.sockets, auditDir]) mkdirSync(dir, { recursive: true, mode: 0o755 });
  if (!owner) return;
  for (const dir of [paths.dir, paths.sockets]) chownSync(dir, owner.uid, owner.gid);
  // The audit directory and log are shared with the account's group, as the gate does (providers/gate/state-access.ts).
  const st = statSync(auditDir);
  if (st.gid !== owner.gid) chownSync(auditDir, -1, owner.gid);
  if ((st.mode & 0o7777) !== 0o2770) chmodSync(auditDir, 0o2770);
  closeSync(openSync(paths.audit, 'a', 0o660));
  const log = statSync(paths.audit);
  if (log.gid !== owner.gid) chownSync(paths.audit, -1, owner.gid);
  if ((log.mode & 0o060) !== 0o060) chmodSync(paths.audit, (log.mode & 0o7777) | 0o060);
  const top = path.resolve(root);
  for (const target of [paths.dir, paths.sockets, auditDir]) {
    for (let dir = path.dirname(target); dir.startsWith(top) && dir !== path.dirname(dir); dir = path.dirname(dir)) {
      const s = statSync(dir);
      if ((s.mode & 0o001) === 0 && s.uid !== owner.uid) chmodSync(dir, (s.mode & 0o7777) | 0o001);
      if (dir === top) break;
    }
  }
}

/**
 * The agentvm CA (once) and a leaf for each injected host (decisions/0023), before the proxy loads rules naming them.
 * The credential store directory exists before any unit starts, so every unit's InaccessiblePaths= covers it.
 */
function issueInjectionCertificates(
  paths: ReturnType<typeof egressPaths>,
  host: string,
  config: EgressServerConfig,
  owner: { uid: number; gid: number } | undefined,
): Diagnostic[] {
  mkdirSync(paths.credstore, { recursive: true, mode: 0o700 });
  chmodSync(paths.credstore, 0o700);
  if (owner) chownSync(paths.credstore, owner.uid, owner.gid);
  const hosts = [...new Set(config.callers.flatMap((c) => (c.inject ?? []).map((r) => r.host)))].sort();
  if (hosts.length === 0) return [];
  try {
    const ca = ensureCa(paths.caDir, host);
    for (const h of hosts) ensureLeaf(ca, paths.leaf(h), h, owner);
    return [];
  } catch (error) {
    const stderr = (error as { stderr?: Buffer }).stderr?.toString().trim();
    return [
      errorDiag(
        EgressCode.certificate,
        `${EGRESS_SERVER_ADDRESS}: cannot issue the certificates for injected credentials: ${(stderr || (error as Error).message).slice(0, 300)}.`,
        {
          address: EGRESS_SERVER_ADDRESS,
          detail:
            'apply makes the agentvm CA and one certificate per injected host with `openssl` (apt-get install openssl); it must run as root.',
        },
      ),
    ];
  }
}

const unitOwner = (file: string) => readOwnedUnit(file, OWNER_KEY);
const show = (endpoint: SystemdEndpoint, props: string[]) => showUnit(endpoint, EGRESS_UNIT, props);
const ctl = (endpoint: SystemdEndpoint, args: string[], diagnostics: Diagnostic[]) =>
  systemctlStep(endpoint, args, diagnostics, EgressCode.systemctl, EGRESS_SERVER_ADDRESS);
