// GatewayUnit: what one profile's systemd unit is, rendered from the desired config of `unit.<workload>.<profile>`.
//   agent-gateway@.service                               the shared template (scope-specific [Install] only);
//                                                        its ExecStart=/bin/false makes an instance without
//                                                        agentvm's drop-in fail closed
//   agent-gateway@<profile>.service.d/50-agentvm.conf    everything profile-specific: owner mark, the one
//                                                        release dir, argv, env, credentials, hardening
// Invariants:
//   - Exactly one runtime source: WorkingDirectory=, the program of ExecStart= (when it is a path) and the only
//     BindReadOnlyPaths= are the one immutable release dir `<releases>/<workload>/<releaseId>`.
//   - Secrets enter as references only (LoadCredential*= of a host path or credstore name); a value never
//     appears in a rendered unit. env-file: values and injected secrets' placeholders are loaded from agentvm's
//     credential store (credential-store.ts, decisions/0023), which every confined unit has InaccessiblePaths= over;
//     vault: is refused with a diagnostic.
//   - Hardening only grows with the risk tier (HARDENING below); user scope always adds PrivateUsers=yes, without
//     which a user manager silently skips or fails the mount-namespace options (decisions/notes-systemd-harness.md).
//   - Rendering is pure: the same config and context give byte-identical files.

import { isIP } from 'node:net';
import path from 'node:path';
import { errorDiag, warningDiag, type Diagnostic } from '../../diagnostics/index.js';
import type { UnitScope } from './analyze.js';
import { SystemdCode } from './codes.js';
import { keyEffect } from './restart-table.js';
import { execDirectives, parsePrograms, type ExecFacts, type ProgramPin } from './exec-allowlist.js';
import { parseMcpPins, type McpPinSet } from './mcp-pins.js';
import { MCP_SOCKET, MCP_SOCKET_ENV } from '../../mcp/paths.js';
import { dataDirectives, DEFAULT_DATA_ROOT, parseDataGrants, parseDataRoot, type DataGrant } from './data-mounts.js';
import {
  environmentAssignment,
  escapeSpecifiers,
  execLine,
  normalizeUnit,
  parsedFromDocument,
  parseUnitFile,
  serializeUnitFile,
  unitDigest,
  unitPath,
  UnitValueError,
  withEnvironment,
  writeUnitFile,
  type NormalizedUnit,
  type ParsedUnit,
  type UnitDocument,
} from './unit-file.js';

export const TEMPLATE_UNIT = 'agent-gateway@.service';
export const DROP_IN_FILE = '50-agentvm.conf';
/** `[Unit] X-AgentvmOwner=` marks agentvm's files: the address in a drop-in, TEMPLATE_OWNER in the template. */
export const OWNER_KEY = 'X-AgentvmOwner';
export const TEMPLATE_OWNER = 'agentvm';
/** The digest of the restart-relevant settings, in the process environment: tells which config a process runs. */
export const RUNTIME_DIGEST_ENV = 'AGENTVM_RUNTIME_DIGEST';
/** PATH of every gateway: profiles may not set it (it would be a second source of programs). */
export const GATEWAY_PATH = '/usr/local/bin:/usr/bin:/bin';

const NAME = /^[a-z][a-z0-9-]{0,62}$/;
const UNIT_ADDRESS = /^unit\.([a-z][a-z0-9-]{0,62})\.([a-z][a-z0-9-]{0,62})$/;

export function instanceUnit(profile: string): string {
  return `agent-gateway@${profile}.service`;
}

/** The drop-in's path relative to the unit directory. */
export function dropInPath(profile: string): string {
  return `${instanceUnit(profile)}.d/${DROP_IN_FILE}`;
}

export function parseUnitAddress(address: string): { workload: string; profile: string } | undefined {
  const m = UNIT_ADDRESS.exec(address);
  return m ? { workload: m[1]!, profile: m[2]! } : undefined;
}

function validInjection(v: unknown): boolean {
  if (v === undefined) return true;
  const i = v as Partial<SecretInjection> | null;
  return (
    typeof i === 'object' &&
    i !== null &&
    typeof i.host === 'string' &&
    typeof i.header === 'string' &&
    (i.format === undefined || (typeof i.format === 'string' && i.format.includes('{}')))
  );
}

export type RiskTier = 'low' | 'moderate' | 'high' | 'critical';
const TIERS: readonly RiskTier[] = ['low', 'moderate', 'high', 'critical'];

export interface EgressRule {
  host: string;
  port: number;
  protocol?: 'tcp' | 'udp';
}

/** The desired configuration of a `unit.<workload>.<profile>` resource (src/engine/expand.ts). */
export interface GatewayConfig {
  workload: string;
  profile: string;
  entrypoint: string[];
  env: Record<string, string>;
  listen: { port: number } | { socket: string } | null;
  health: { path: string; timeoutSeconds: number } | null;
  reload: boolean;
  riskTier: RiskTier;
  egress: EgressRule[];
  secrets: Array<{ name: string; ref: string; inject?: SecretInjection }>;
  releaseId: string;
  scope: UnitScope;
  /**
   * The workload's canary (manifest `canary`), when it has one: the canary profile's unit soaks after a promotion
   * (provider.ts). Not rendered: it changes how apply gates the unit, not what the unit runs.
   */
  canary?: { profile: string; soakSeconds: number } | null;
  /** The contract's `kind: program` tools: the only programs besides the entrypoint and its interpreter (exec-allowlist.ts). */
  programs?: ProgramPin[];
  /** The contract's MCP tool pins (mcp-pins.ts). Not rendered: recorded so plan can show a re-pin. */
  mcp?: McpPinSet[];
  /** The contract's data grants (data-mounts.ts, ADR 0024); absent: none. */
  data?: DataGrant[];
  /** The host's data root (`spec.data.root`) as the host file names it; absent: DEFAULT_DATA_ROOT. */
  dataRoot?: string;
}

/** Where the unit will run, as the manager sees the host: needed to turn names into paths. */
export interface RenderContext {
  scope: UnitScope;
  /** `<paths.releases>` as the manager sees it (without the host root when rendering offline into a root). */
  releasesDir: string;
  /** The manager's runtime directory (`%t`): `/run`, or `$XDG_RUNTIME_DIR` in user scope; null when unknown. */
  runtimeDir: string | null;
  /** The exec allowlist resolved on the host (exec-allowlist.ts resolveExec); absent when validating offline. */
  exec?: ExecFacts | null;
  /**
   * The network confinement (decisions/0016): the unit gets its own network namespace and reaches the world only
   * through the host's egress proxy, by the unit shim. Absent: the unit is rendered without it (offline renders of
   * old lockfile entries); every provider path passes it.
   */
  egress?: EgressRenderContext | null;
  /** The host root as the manager sees it, which the config's `dataRoot` is under (ADR 0024); absent: `/`. */
  dataPrefix?: string | null;
  /** Grants that do not exist on the host and are not mounted (data-mounts.ts unmounted); absent: none. */
  dataMissing?: readonly string[] | 'all';
}

export interface EgressRenderContext {
  /** The node binary that runs the shim. */
  node: string;
  /** dist/egress/unit-shim.js. */
  shim: string;
  /** `<root>/run/agentvm/egress` as the manager sees it: one directory per caller, each holding its proxy socket. */
  socketsDir: string;
  /** agentvm's credential store and CA directory as the manager sees them (decisions/0023). */
  credstoreDir?: string;
  caDir?: string;
}

/**
 * The profile's MCP gateway socket (providers/mcp): of `<run>/agentvm/mcp` (the egress sockets' sibling, mcp/paths.ts)
 * only its own directory is visible, read-only (connect() needs no write access), and its path is in
 * $AGENTVM_MCP_SOCKET. Its only way to its MCP servers: they run without network, or behind the gateway.
 */
function mcpGatewayDirectives(
  egressSocketsDir: string,
  workload: string,
  profile: string,
): Array<{ key: string; value: string }> {
  const dir = path.posix.join(path.posix.dirname(egressSocketsDir), 'mcp');
  const own = path.posix.join(dir, `mcp.${workload}.${profile}`);
  return [
    { key: 'TemporaryFileSystem', value: `${unitPath(dir)}:ro` },
    // `-`: a unit rendered with pins but without its gateway (no release id yet) starts, and finds no socket.
    { key: 'BindReadOnlyPaths', value: `-${unitPath(own)}` },
    { key: 'Environment', value: environmentAssignment(MCP_SOCKET_ENV, path.posix.join(own, MCP_SOCKET)) },
  ];
}

/** The proxy's port on a unit's own loopback (HTTPS_PROXY=http://127.0.0.1:<port>); another when the profile listens there. */
export function unitProxyPort(listen: GatewayConfig['listen']): number {
  return listen && 'port' in listen && listen.port === 3128 ? 3129 : 3128;
}

/** The socket the unit shim serves inbound, inside the unit's RuntimeDirectory (the egress server bridges to it). */
export const INBOUND_SOCKET_NAME = '.agentvm-inbound.sock';

export interface RenderedFile {
  /** Path relative to the unit directory. */
  name: string;
  text: string;
  parsed: ParsedUnit;
}

/** A secret the workload gets only as a placeholder; the egress proxy injects the value (decisions/0023). */
export interface SecretInjection {
  host: string;
  header: string;
  format?: string;
}

export interface CredentialSource {
  name: string;
  scheme: 'file' | 'systemd-creds' | 'credstore' | 'env-file';
  /** True when the unit loads a placeholder and the egress proxy injects the value. */
  injected?: boolean;
  /** Host path (file:, systemd-creds:) or credstore name. */
  source: string;
}

export interface RenderedGateway {
  address: string;
  unit: string;
  template: RenderedFile;
  dropIn: RenderedFile;
  /** The release dir as the manager sees it. */
  releaseDir: string;
  /** Template and drop-in together, normalised. */
  normalized: NormalizedUnit;
  /** unitDigest of template and drop-in: the resource's digest. */
  digest: string;
  /** Digest of the restart-relevant settings (also in the unit's environment as RUNTIME_DIGEST_ENV). */
  runtimeDigest: string;
  credentials: CredentialSource[];
  /** The health probe target, when the profile has a health check. */
  health: { path: string; timeoutSeconds: number; port?: number; socketPath?: string } | null;
  hasReload: boolean;
}

// ---------------------------------------------------------------------------------------------------------
// Config

/** Checks the desired config's shape; the diagnostics name the field. */
export function parseGatewayConfig(
  config: Record<string, unknown>,
  address: string,
): { config?: GatewayConfig; diagnostics: Diagnostic[] } {
  const diagnostics: Diagnostic[] = [];
  const bad = (field: string, what: string): void => {
    diagnostics.push(
      errorDiag(SystemdCode.invalidConfig, `${address}: ${field} ${what}.`, {
        address,
        detail:
          'The unit config is made by agentvm from the workload manifest and contract; re-plan from the repository.',
      }),
    );
  };
  const parsedAddress = parseUnitAddress(address);
  if (!parsedAddress) bad('the address', 'is not unit.<workload>.<profile>');
  const { profile, entrypoint, env, listen, health, reload, riskTier, egress, secrets, releaseId, scope, canary } =
    config;
  if (typeof profile !== 'string' || !NAME.test(profile) || (parsedAddress && parsedAddress.profile !== profile))
    bad('profile', 'must be the DNS label of the address');
  if (
    !Array.isArray(entrypoint) ||
    entrypoint.length === 0 ||
    !entrypoint.every((a) => typeof a === 'string' && a !== '')
  )
    bad('entrypoint', 'must be a non-empty argv');
  if (
    typeof env !== 'object' ||
    env === null ||
    Array.isArray(env) ||
    !Object.values(env).every((v) => typeof v === 'string')
  )
    bad('env', 'must map names to strings');
  let listenValue: GatewayConfig['listen'] = null;
  if (listen !== null && listen !== undefined) {
    const l = listen as Record<string, unknown>;
    if (
      typeof l.port === 'number' &&
      Number.isInteger(l.port) &&
      l.port > 0 &&
      l.port < 65536 &&
      l.socket === undefined
    )
      listenValue = { port: l.port };
    else if (
      typeof l.socket === 'string' &&
      /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(l.socket) &&
      l.port === undefined
    )
      listenValue = { socket: l.socket };
    else bad('listen', 'must be exactly one of a port or a socket file name');
  }
  let healthValue: GatewayConfig['health'] = null;
  if (health !== null && health !== undefined) {
    const h = health as Record<string, unknown>;
    const timeout = h.timeoutSeconds ?? 30;
    if (
      typeof h.path !== 'string' ||
      !/^\/[A-Za-z0-9._~/-]*$/.test(h.path) ||
      typeof timeout !== 'number' ||
      timeout < 1
    )
      bad('health', 'must have an absolute path and a positive timeoutSeconds');
    else healthValue = { path: h.path, timeoutSeconds: timeout };
    if (!listenValue) bad('health', 'needs listen (a port or a socket) to probe');
  }
  if (reload !== undefined && typeof reload !== 'boolean') bad('reload', 'must be a boolean');
  if (typeof riskTier !== 'string' || !TIERS.includes(riskTier as RiskTier))
    bad('riskTier', `must be one of ${TIERS.join(', ')}`);
  if (
    !Array.isArray(egress) ||
    !egress.every(
      (e) =>
        typeof e === 'object' &&
        e !== null &&
        typeof (e as EgressRule).host === 'string' &&
        typeof (e as EgressRule).port === 'number',
    )
  )
    bad('egress', 'must be a list of {host, port}');
  if (
    !Array.isArray(secrets) ||
    !secrets.every(
      (s) =>
        typeof s === 'object' &&
        s !== null &&
        typeof (s as { name?: unknown }).name === 'string' &&
        typeof (s as { ref?: unknown }).ref === 'string' &&
        validInjection((s as { inject?: unknown }).inject),
    )
  )
    bad('secrets', 'must be a list of {name, ref, inject?: {host, header, format?}}');
  if (typeof releaseId !== 'string' || !/^(?!current$)[A-Za-z0-9@+_~-][A-Za-z0-9@+._~-]{0,254}$/.test(releaseId))
    bad('releaseId', 'must name the release directory (the workload has no installable release?)');
  let canaryValue: GatewayConfig['canary'] = null;
  if (canary !== null && canary !== undefined) {
    const c = canary as Record<string, unknown>;
    const soak = c.soakSeconds ?? 60;
    if (
      typeof c.profile !== 'string' ||
      !NAME.test(c.profile) ||
      typeof soak !== 'number' ||
      !Number.isInteger(soak) ||
      soak < 0
    )
      bad('canary', 'must name a profile and a whole number of soakSeconds');
    else canaryValue = { profile: c.profile, soakSeconds: soak };
  }
  const programs = parsePrograms(config.programs);
  if (!programs) bad('programs', 'must be a list of {name, path, sha256} without `..`');
  const mcp = parseMcpPins(config.mcp);
  const data = parseDataGrants(config.data);
  if (!data) bad('data', 'must be a list of {path, access} with relative paths without `..`');
  const dataRoot = parseDataRoot(config.dataRoot);
  if (!dataRoot) bad('dataRoot', 'must be an absolute path without `..`');
  if (!mcp) bad('mcp', 'must be a list of {server, tools: [{name, sha256}]}');
  const scopeValue = scope ?? 'system';
  if (scopeValue !== 'system' && scopeValue !== 'user') bad('scope', 'must be system or user');
  if (diagnostics.length > 0 || !parsedAddress) return { diagnostics };
  return {
    config: {
      workload: parsedAddress.workload,
      profile: profile as string,
      entrypoint: entrypoint as string[],
      env: env as Record<string, string>,
      listen: listenValue,
      health: healthValue,
      reload: reload === true,
      riskTier: riskTier as RiskTier,
      egress: egress as EgressRule[],
      secrets: secrets as GatewayConfig['secrets'],
      releaseId: releaseId as string,
      scope: scopeValue as UnitScope,
      canary: canaryValue,
      programs: programs!,
      ...(mcp && mcp.length > 0 ? { mcp } : {}),
      data: data!,
      dataRoot: dataRoot!,
    },
    diagnostics,
  };
}

// ---------------------------------------------------------------------------------------------------------
// Hardening

type Directive = [key: string, value: string];

/** Per tier, what is added on top of the tiers below it. Memory and task limits are replaced, not added. */
const HARDENING: Record<RiskTier, { add: Directive[]; memoryMax: string; tasksMax: number }> = {
  low: {
    add: [
      ['NoNewPrivileges', 'yes'],
      ['ProtectSystem', 'strict'],
      ['PrivateTmp', 'yes'],
      ['PrivateDevices', 'yes'],
      ['RestrictSUIDSGID', 'yes'],
      ['LockPersonality', 'yes'],
      ['RestrictRealtime', 'yes'],
      ['RestrictAddressFamilies', 'AF_UNIX AF_INET AF_INET6'],
      ['CapabilityBoundingSet', ''],
      ['SystemCallArchitectures', 'native'],
      ['SystemCallFilter', '@system-service'],
      ['SystemCallErrorNumber', 'EPERM'],
      ['UMask', '0077'],
    ],
    memoryMax: '1G',
    tasksMax: 512,
  },
  moderate: {
    add: [
      ['RestrictNamespaces', 'yes'],
      ['ProtectKernelTunables', 'yes'],
      ['ProtectKernelModules', 'yes'],
      ['ProtectKernelLogs', 'yes'],
      ['ProtectControlGroups', 'yes'],
      ['ProtectClock', 'yes'],
      ['ProtectHostname', 'yes'],
    ],
    memoryMax: '768M',
    tasksMax: 256,
  },
  high: {
    add: [
      ['SystemCallFilter', '~@privileged @resources'],
      ['ProtectProc', 'invisible'],
      ['ProcSubset', 'pid'],
      ['PrivateMounts', 'yes'],
      ['RemoveIPC', 'yes'],
      ['DevicePolicy', 'closed'],
      ['KeyringMode', 'private'],
    ],
    memoryMax: '512M',
    tasksMax: 128,
  },
  critical: {
    add: [
      ['SystemCallFilter', '~@debug @mount @cpu-emulation @obsolete @raw-io @reboot @swap @module @clock'],
      ['LimitNOFILE', '1024'],
      ['LimitCORE', '0'],
    ],
    memoryMax: '256M',
    tasksMax: 64,
  },
};

/** The hardening directives of a tier in a scope (without the egress and release-specific ones). */
export function hardeningFor(tier: RiskTier, scope: UnitScope, opts: { privateNetwork: boolean }): Directive[] {
  const out: Directive[] = [];
  // System scope: a transient user per unit, never root. User scope: a user namespace, without which a user
  // manager skips (or fails on) every mount-namespace option.
  out.push(scope === 'system' ? ['DynamicUser', 'yes'] : ['PrivateUsers', 'yes']);
  for (const t of TIERS.slice(0, TIERS.indexOf(tier) + 1)) out.push(...HARDENING[t].add);
  // ProtectHome=yes hides /run/user in user scope, which holds the unit's own credentials and runtime dir;
  // tmpfs hides the same homes and keeps what the unit needs bind-mounted in.
  out.push(['ProtectHome', scope === 'user' ? 'tmpfs' : 'yes']);
  // System scope only: a user manager cannot set these up (PrivateIPC= fails with 226/NAMESPACE; PrivateUsers=
  // is already set above).
  if (scope === 'system' && TIERS.indexOf(tier) >= TIERS.indexOf('moderate')) out.push(['PrivateUsers', 'yes']);
  if (scope === 'system' && TIERS.indexOf(tier) >= TIERS.indexOf('high')) out.push(['PrivateIPC', 'yes']);
  if (tier === 'critical' && opts.privateNetwork) {
    out.push(['PrivateNetwork', 'yes']);
    out.push(['RestrictAddressFamilies', '']);
    out.push(['RestrictAddressFamilies', 'AF_UNIX']);
  }
  out.push(['MemoryMax', HARDENING[tier].memoryMax]);
  out.push(['TasksMax', String(HARDENING[tier].tasksMax)]);
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Egress and secrets

const ANY_HOST = new Set(['*', '0.0.0.0', '::', '0.0.0.0/0', '::/0']);

/** IPAddressAllow= entries for the egress allowlist; hostnames cannot be expressed and are reported. */
export function egressAllowList(
  egress: readonly EgressRule[],
  address: string,
): { allow: string[]; diagnostics: Diagnostic[] } {
  const allow = new Set<string>(['localhost']);
  const hostnames: string[] = [];
  for (const rule of egress) {
    const host = rule.host.replace(/^\[(.*)\]$/, '$1');
    if (ANY_HOST.has(host)) {
      allow.add('any');
      continue;
    }
    const [ip, prefix, extra] = host.split('/');
    const family = isIP(ip ?? '');
    const prefixOk = prefix === undefined || (/^\d{1,3}$/.test(prefix) && Number(prefix) <= (family === 6 ? 128 : 32));
    if (family !== 0 && prefixOk && extra === undefined) allow.add(host);
    else hostnames.push(`${rule.host}:${rule.port}`);
  }
  const diagnostics =
    hostnames.length === 0
      ? []
      : [
          warningDiag(
            SystemdCode.egressHostname,
            `${address}: egress to ${hostnames.join(', ')} stays blocked: IPAddressAllow= takes IP addresses, not host names.`,
            {
              address,
              detail:
                'The unit denies all IP traffic except loopback and the listed addresses. List the destinations by IP address (or CIDR), or route them through an egress proxy on an allowed address; host-name allowlists are not available for units yet (README, "Gateway units").',
            },
          ),
        ];
  return { allow: [...allow], diagnostics };
}

/** LoadCredential*= for each secret reference; references this provider cannot deliver are diagnostics. */
export function credentialDirectives(
  secrets: GatewayConfig['secrets'],
  scope: UnitScope,
  address: string,
  credstoreDir?: string,
): { directives: Directive[]; sources: CredentialSource[]; diagnostics: Diagnostic[] } {
  const directives: Directive[] = [];
  const sources: CredentialSource[] = [];
  const diagnostics: Diagnostic[] = [];
  for (const { name, ref, inject } of secrets) {
    const colon = ref.indexOf(':');
    const scheme = colon > 0 ? ref.slice(0, colon) : '';
    const body = ref.slice(colon + 1);
    if (!NAME.test(name)) {
      diagnostics.push(
        errorDiag(SystemdCode.invalidConfig, `${address}: secret name ${JSON.stringify(name)} is not a DNS label.`, {
          address,
        }),
      );
      continue;
    }
    try {
      const stored = storedCredential({ name, scheme, body, inject }, address, credstoreDir);
      if (stored && 'diagnostic' in stored) {
        diagnostics.push(stored.diagnostic);
        continue;
      }
      if (stored) {
        directives.push(['LoadCredential', `${name}:${unitPath(stored.path)}`]);
        sources.push({
          name,
          scheme: scheme as CredentialSource['scheme'],
          source: body,
          ...(inject ? { injected: true } : {}),
        });
      } else if (scheme === 'file') {
        directives.push(['LoadCredential', `${name}:${unitPath(body)}`]);
        sources.push({ name, scheme, source: body });
      } else if (scheme === 'systemd-creds') {
        if (scope === 'user') {
          diagnostics.push(
            errorDiag(
              SystemdCode.secretUnsupported,
              `${address}: secret \`${name}\` (systemd-creds:) cannot be decrypted by a user manager.`,
              {
                address,
                detail:
                  'systemd before 256 decrypts credentials only in the system manager (the host key is root-only). Use system scope for this workload, or deliver the secret as file: readable by the user.',
              },
            ),
          );
          continue;
        }
        directives.push(['LoadCredentialEncrypted', `${name}:${unitPath(body)}`]);
        sources.push({ name, scheme, source: body });
      } else if (scheme === 'credstore') {
        if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(body))
          throw new UnitValueError(`credstore name ${JSON.stringify(body)} is not a plain file name`);
        // Without a path, systemd (>= 251) looks the credential up in /etc/credstore, /run/credstore, /usr/lib/credstore.
        directives.push(['LoadCredential', body === name ? name : `${name}:${escapeSpecifiers(body)}`]);
        sources.push({ name, scheme, source: body });
      } else {
        diagnostics.push(
          errorDiag(
            SystemdCode.secretUnsupported,
            `${address}: secret \`${name}\` uses \`${scheme || ref.split(':')[0]}:\`, which the systemd provider cannot deliver yet.`,
            {
              address,
              detail:
                'The systemd provider delivers file:, systemd-creds: and credstore: references as systemd credentials ($CREDENTIALS_DIRECTORY/<name>). Store the secret in a file or the credstore on the host and refer to it that way.',
            },
          ),
        );
      }
    } catch (err) {
      if (!(err instanceof UnitValueError)) throw err;
      diagnostics.push(
        errorDiag(
          SystemdCode.unsafeValue,
          `${address}: the reference of secret \`${name}\` cannot be written into a unit file: ${err.message}.`,
          { address },
        ),
      );
    }
  }
  return { directives, sources, diagnostics };
}

/**
 * Where the unit loads a secret from agentvm's credential store: an injected secret's placeholder, or an env-file:
 * value copied there at apply. Undefined: loaded from its own reference (file:, systemd-creds:, credstore:).
 */
function storedCredential(
  s: { name: string; scheme: string; body: string; inject: SecretInjection | undefined },
  address: string,
  credstoreDir: string | undefined,
): { path: string } | { diagnostic: Diagnostic } | undefined {
  if (!s.inject && s.scheme !== 'env-file') return undefined;
  if (s.inject && s.scheme !== 'file' && s.scheme !== 'env-file') {
    return {
      diagnostic: errorDiag(
        SystemdCode.secretUnsupported,
        `${address}: secret \`${s.name}\` is injected, but its \`${s.scheme}:\` value cannot be read by apply.`,
        {
          address,
          detail:
            "Injected secrets are read at apply into agentvm's root-only credential store: give them as file:/abs/path or env-file:/abs/path#VAR.",
        },
      ),
    };
  }
  if (!credstoreDir) {
    return {
      diagnostic: errorDiag(
        SystemdCode.secretUnsupported,
        `${address}: secret \`${s.name}\` needs agentvm's credential store, which only confined units have.`,
        { address },
      ),
    };
  }
  return { path: path.posix.join(credstoreDir, address, `${s.name}.${s.inject ? 'placeholder' : 'value'}`) };
}

// ---------------------------------------------------------------------------------------------------------
// Rendering

/** The two templates, rendered once per process (renderTemplate is pure; RenderedFiles are never mutated). */
const templates = new Map<UnitScope, RenderedFile>();

/** The shared template. Only the [Install] target differs between scopes. */
export function renderTemplate(scope: UnitScope): RenderedFile {
  let template = templates.get(scope);
  if (!template) {
    template = renderTemplateNow(scope);
    templates.set(scope, template);
  }
  return template;
}

function renderTemplateNow(scope: UnitScope): RenderedFile {
  const doc: UnitDocument = {
    header: [
      'Managed by agentvm: the gateway template. Each profile runs as the explicit instance',
      'agent-gateway@<profile>.service; its drop-in agent-gateway@<profile>.service.d/50-agentvm.conf',
      'holds everything profile-specific. Do not edit: agentvm reports changes as drift and reverts them.',
    ],
    sections: [
      {
        name: 'Unit',
        entries: [
          { key: 'Description', value: 'agentvm gateway %i' },
          { key: OWNER_KEY, value: TEMPLATE_OWNER },
        ],
      },
      {
        name: 'Service',
        entries: [
          { key: 'Type', value: 'simple' },
          // Fail closed: an instance without agentvm's drop-in has nothing to run.
          { key: 'ExecStart', value: '/bin/false' },
          { key: 'Restart', value: 'on-failure' },
          { key: 'RestartSec', value: '2' },
          // A program that does not exit on SIGTERM is SIGKILLed after this, well inside the time apply gives one
          // systemctl call (90 s, the manager's default stop timeout): a stuck stop never stalls an apply.
          { key: 'TimeoutStopSec', value: '20s' },
        ],
      },
      {
        name: 'Install',
        entries: [{ key: 'WantedBy', value: scope === 'system' ? 'multi-user.target' : 'default.target' }],
      },
    ],
  };
  const text = serializeUnitFile(doc);
  return { name: TEMPLATE_UNIT, text, parsed: parseUnitFile(text) };
}

/** Variables the unit itself sets; a profile may not override them. */
const PROXY_ENV = ['HTTP_PROXY', 'HTTPS_PROXY', 'ALL_PROXY', 'http_proxy', 'https_proxy', 'all_proxy'];
const NO_PROXY_ENV = ['NO_PROXY', 'no_proxy'];
/** Where TLS clients find the agentvm CA of injected hosts (bundle: the system store + it; extra: it alone). */
const CA_BUNDLE_ENV = ['SSL_CERT_FILE', 'REQUESTS_CA_BUNDLE', 'CURL_CA_BUNDLE'];
const CA_EXTRA_ENV = 'NODE_EXTRA_CA_CERTS';
const OWNED_ENV = new Set([
  'PATH',
  RUNTIME_DIGEST_ENV,
  'CREDENTIALS_DIRECTORY',
  'RUNTIME_DIRECTORY',
  'STATE_DIRECTORY',
  ...PROXY_ENV,
  ...NO_PROXY_ENV,
  ...CA_BUNDLE_ENV,
  CA_EXTRA_ENV,
]);

/** Renders one profile's unit (template and drop-in). Errors leave `rendered` undefined. */
export function renderGateway(
  config: GatewayConfig,
  ctx: RenderContext,
  address: string,
): { rendered?: RenderedGateway; diagnostics: Diagnostic[] } {
  return renderGatewayAs(config, ctx, address, 'full');
}

/**
 * The diagnostics renderGateway gives, without building the rendered unit (validate: ADR 0027). Every check of the
 * full render runs, including the serialization of the drop-in (which refuses values it cannot write); only the
 * parse, normalisation and digests of the result are skipped, and none of those can fail.
 */
export function gatewayDiagnostics(config: GatewayConfig, ctx: RenderContext, address: string): Diagnostic[] {
  return renderGatewayAs(config, ctx, address, 'check').diagnostics;
}

/** A stand-in runtime digest for a check: the same shape as a real one, so serialization accepts it alike. */
const CHECK_RUNTIME_DIGEST = '0'.repeat(64);

function renderGatewayAs(
  config: GatewayConfig,
  ctx: RenderContext,
  address: string,
  mode: 'full' | 'check',
): { rendered?: RenderedGateway; diagnostics: Diagnostic[] } {
  const diagnostics: Diagnostic[] = [];
  const unsafe = (what: string, err: unknown): void => {
    if (!(err instanceof UnitValueError)) throw err;
    diagnostics.push(
      errorDiag(SystemdCode.unsafeValue, `${address}: ${what} cannot be written into a unit file: ${err.message}.`, {
        address,
        detail:
          'Unit files are line-based and expand % and $: agentvm refuses values it cannot escape rather than write a different meaning.',
      }),
    );
  };

  const releaseDir = path.posix.join(ctx.releasesDir, config.workload, config.releaseId);
  let releasePath = '';
  try {
    releasePath = unitPath(releaseDir);
  } catch (err) {
    unsafe(`the release directory ${releaseDir}`, err);
  }

  // argv: a program on the fixed PATH, or a path inside the release. Nothing else is a runtime source.
  const [program = '', ...args] = config.entrypoint;
  let argv: string[] = [];
  if (program.startsWith('/')) {
    diagnostics.push(
      errorDiag(SystemdCode.runtimeSource, `${address}: the entrypoint ${program} is outside the release directory.`, {
        address,
        detail: 'Start a program on PATH (python3, node) or a path relative to the release directory (bin/server).',
      }),
    );
  } else if (program.includes('/')) {
    const rel = path.posix.normalize(program);
    if (rel.startsWith('../') || rel === '..')
      diagnostics.push(
        errorDiag(
          SystemdCode.runtimeSource,
          `${address}: the entrypoint ${program} climbs out of the release directory.`,
          { address },
        ),
      );
    else argv = [path.posix.join(releaseDir, rel), ...args];
  } else {
    argv = [program, ...args];
  }
  let execStart = '';
  const confined = ctx.egress ?? null;
  const proxyPort = unitProxyPort(config.listen);
  let callerDir = '';
  if (argv.length > 0) {
    try {
      if (confined) {
        callerDir = unitPath(path.posix.join(confined.socketsDir, address));
        const inbound =
          config.listen && 'port' in config.listen && ctx.runtimeDir !== null
            ? [
                '--inbound-socket',
                path.posix.join(ctx.runtimeDir, 'agent-gateway', config.profile, INBOUND_SOCKET_NAME),
                '--inbound-port',
                String(config.listen.port),
              ]
            : [];
        argv = [
          confined.node,
          confined.shim,
          '--proxy-port',
          String(proxyPort),
          '--egress-socket',
          path.posix.join(confined.socketsDir, address, 'proxy.sock'),
          ...inbound,
          '--',
          ...argv,
        ];
      }
      execStart = execLine(argv);
    } catch (err) {
      unsafe('the entrypoint', err);
    }
  }

  // Environment: the fixed PATH, the profile's variables, and the listener defaults the gateways read.
  const env = new Map<string, string>([['PATH', GATEWAY_PATH]]);
  for (const [name, value] of Object.entries(config.env).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    if (OWNED_ENV.has(name)) {
      diagnostics.push(
        errorDiag(
          SystemdCode.envConflict,
          `${address}: env ${name} is set by the unit itself and cannot be overridden.`,
          { address },
        ),
      );
      continue;
    }
    env.set(name, value);
  }
  let socketPath: string | undefined;
  const wantEnv = (name: string, value: string, mustAgree = true): void => {
    const given = config.env[name];
    if (given === undefined) env.set(name, value);
    else if (given !== value && mustAgree) {
      diagnostics.push(
        errorDiag(
          SystemdCode.envConflict,
          `${address}: env ${name}=${JSON.stringify(given)} contradicts the profile's listen/name (${value}).`,
          {
            address,
            detail: `Drop ${name} from env (the unit sets it), or make it agree: the health check probes what listen says.`,
          },
        ),
      );
    }
  };
  if (confined) {
    // Ordinary HTTP clients (curl, requests, undici with a proxy agent, Go's net/http) find the way out here.
    for (const name of PROXY_ENV) env.set(name, `http://127.0.0.1:${proxyPort}`);
    for (const name of NO_PROXY_ENV) env.set(name, 'localhost,127.0.0.1,::1');
    const ca = injectionCa(config, confined);
    if (ca) {
      for (const name of CA_BUNDLE_ENV) env.set(name, ca.bundle);
      env.set(CA_EXTRA_ENV, ca.cert);
    }
  }
  wantEnv('AGENT_PROFILE', config.profile, false);
  if (config.listen && 'port' in config.listen) wantEnv('AGENT_LISTEN_PORT', String(config.listen.port));
  if (config.listen && 'socket' in config.listen) {
    if (ctx.runtimeDir === null) {
      diagnostics.push(
        errorDiag(
          SystemdCode.invalidConfig,
          `${address}: a unix-socket listener needs the manager's runtime directory, which is unknown when user units are rendered into a root for every user.`,
          {
            address,
            detail: 'Listen on a port, or apply on the host as the account whose manager runs the gateways.',
          },
        ),
      );
    } else {
      socketPath = path.posix.join(ctx.runtimeDir, 'agent-gateway', config.profile, config.listen.socket);
      wantEnv('AGENT_LISTEN_SOCKET', socketPath);
    }
  }
  const envEntries: Array<{ key: string; value: string }> = [];
  for (const [name, value] of env) {
    try {
      envEntries.push({ key: 'Environment', value: environmentAssignment(name, value) });
    } catch (err) {
      unsafe(`env ${name}`, err);
    }
  }

  const creds = credentialDirectives(config.secrets, config.scope, address, confined?.credstoreDir);
  diagnostics.push(...creds.diagnostics);
  // Confined: the allowlist lives in the egress proxy's rules, not in the unit (a change re-applies without a restart).
  const egress = confined ? { allow: ['localhost'], diagnostics: [] } : egressAllowList(config.egress, address);
  diagnostics.push(...egress.diagnostics);
  if (diagnostics.some((d) => d.severity === 'error')) return { diagnostics };

  // Unconfined (legacy renders) critical profiles without egress or port get AF_UNIX only; confined ones keep AF_INET
  // for the shim's listener on their own loopback (which reaches nothing but themselves and the proxy).
  const privateNetwork = !ctx.egress && config.egress.length === 0 && !(config.listen && 'port' in config.listen);
  const service: Array<{ key: string; value: string }> = [
    { key: 'WorkingDirectory', value: releasePath },
    { key: 'ExecStart', value: '' },
    { key: 'ExecStart', value: execStart },
  ];
  if (config.reload) service.push({ key: 'ExecReload', value: '/bin/kill -HUP $MAINPID' });
  service.push(...envEntries);
  service.push(...creds.directives.map(([key, value]) => ({ key, value })));
  // The release is bound read-only into the unit's namespace: visible whatever PrivateTmp=/ProtectHome= hide.
  service.push({ key: 'BindReadOnlyPaths', value: releasePath });
  // The runtime directory (a listener socket, or the shim's inbound socket): a writable mount systemd creates, so it
  // is one of the places the exec allowlist must keep noexec.
  const runtimeDir = socketPath
    ? path.posix.dirname(socketPath)
    : confined && config.listen && ctx.runtimeDir !== null
      ? path.posix.join(ctx.runtimeDir, 'agent-gateway', config.profile)
      : null;
  if (socketPath || (confined && config.listen))
    service.push({ key: 'RuntimeDirectory', value: `agent-gateway/${config.profile}` });
  const hardening = hardeningFor(config.riskTier, config.scope, { privateNetwork });
  service.push(...hardening.map(([key, value]) => ({ key, value })));
  // User scope: the manager's private socket and the session bus are in %t, and the manager accepts the unit's uid
  // (PrivateUsers= maps it back to the account): a unit that reached them could start any unit of its own — e.g.
  // run around its MCP gateway or its exec allowlist with systemd-run. Found by test/mcp-e2e.test.ts.
  if (config.scope === 'user' && ctx.runtimeDir !== null)
    service.push({
      key: 'InaccessiblePaths',
      value: `-${unitPath(path.posix.join(ctx.runtimeDir, 'systemd'))} -${unitPath(path.posix.join(ctx.runtimeDir, 'bus'))}`,
    });
  if (confined) {
    // Its own network namespace (only its own loopback), and of the proxy's caller sockets only its own directory:
    // a tmpfs over the sockets directory, its own directory bound back read-only (connect() needs no write access).
    if (!hardening.some(([k]) => k === 'PrivateNetwork')) service.push({ key: 'PrivateNetwork', value: 'yes' });
    // The stop signal goes to the shim alone, which hands the program exactly one: with the default (control-group)
    // the program got systemd's SIGTERM and the shim's forwarded copy, and a program whose handler is not re-entrant
    // (Python's threading.Event.set in a signal handler) deadlocked on the second and ran until the stop timeout.
    // Whatever is left when the shim exits is SIGKILLed, as before.
    service.push({ key: 'KillMode', value: 'mixed' });
    service.push({ key: 'TemporaryFileSystem', value: `${unitPath(confined.socketsDir)}:ro` });
    service.push({ key: 'BindReadOnlyPaths', value: callerDir });
    if (config.mcp?.length) service.push(...mcpGatewayDirectives(confined.socketsDir, config.workload, config.profile));
    // The shim and the node that runs it stay visible whatever ProtectHome=/PrivateTmp= hide (agentvm under a home).
    service.push({ key: 'BindReadOnlyPaths', value: `${unitPath(confined.node)} ${unitPath(confined.shim)}` });
    service.push(...injectionDirectives(config, confined).map(([key, value]) => ({ key, value })));
  }
  // Project data and the agent's memory (ADR 0024); their writable mounts join the exec allowlist's noexec list.
  let data: ReturnType<typeof dataDirectives> = { directives: [], noexec: [] };
  try {
    data = dataDirectives({
      workload: config.workload,
      profile: config.profile,
      grants: config.data ?? [],
      dataDir: path.posix.join(ctx.dataPrefix ?? '/', config.dataRoot ?? DEFAULT_DATA_ROOT),
      quote: unitPath,
      missing: ctx.dataMissing ?? [],
    });
  } catch (err) {
    unsafe('a data path', err);
    return { diagnostics };
  }
  service.push(...data.directives.map(([key, value]) => ({ key, value })));
  // The exec allowlist (decisions/0022): after the hardening, so its SystemCallFilter=~ narrows the tier's list. A
  // confined unit's argv[0] is the node that runs the egress shim; the facts (resolveExec) list it with the entrypoint.
  const entry = argv[0]?.startsWith('/') ? argv[0] : null;
  service.push(
    ...execDirectives({
      programs: config.programs ?? [],
      releaseDir,
      entrypoint: entry,
      facts: ctx.exec ?? null,
      runtimeDirs: [...(runtimeDir ? [runtimeDir] : []), ...data.noexec],
    }).map(([key, value]) => ({ key, value })),
  );
  service.push({ key: 'IPAddressDeny', value: 'any' });
  service.push({ key: 'IPAddressAllow', value: egress.allow.join(' ') });

  const template = renderTemplate(config.scope);
  const unitSection = [
    {
      key: 'Description',
      value: escapeSpecifiers(`agentvm gateway ${config.workload}/${config.profile} (release ${config.releaseId})`),
    },
    { key: OWNER_KEY, value: address },
  ];
  const header = [
    `Managed by agentvm: ${address} (workload ${config.workload}, profile ${config.profile}, release ${config.releaseId}).`,
    'Do not edit: agentvm reports changes as drift and reverts them on apply.',
  ];
  const dropInOf = (extraEnv: Array<{ key: string; value: string }>): UnitDocument => ({
    header,
    sections: [
      { name: 'Unit', entries: unitSection },
      { name: 'Service', entries: [...service, ...extraEnv] },
    ],
  });
  const digestEntry = (digest: string) => ({
    key: 'Environment',
    value: environmentAssignment(RUNTIME_DIGEST_ENV, digest),
  });

  if (mode === 'check') {
    // The full render serializes the drop-in with its digest last: the same entries, checked in the same order.
    try {
      serializeUnitFile(dropInOf([digestEntry(CHECK_RUNTIME_DIGEST)]));
    } catch (err) {
      unsafe('the unit', err);
    }
    return { diagnostics };
  }
  let written: { text: string; parsed: ParsedUnit };
  let runtime: string;
  // The settings without the digest, normalised once: the runtime digest is computed from them, and the unit's
  // normalised form is them plus the digest's Environment= (withEnvironment; normalizeUnit again when it cannot say).
  const base = normalizeUnit(template.parsed, parsedFromDocument(dropInOf([])));
  try {
    runtime = runtimeDigestOfNormalized(base);
    written = writeUnitFile(dropInOf([digestEntry(runtime)]));
  } catch (err) {
    unsafe('the unit', err);
    return { diagnostics };
  }
  const dropIn: RenderedFile = { name: dropInPath(config.profile), text: written.text, parsed: written.parsed };
  const normalized =
    withEnvironment(base, 'Service', RUNTIME_DIGEST_ENV, runtime) ?? normalizeUnit(template.parsed, dropIn.parsed);
  const health = config.health
    ? {
        ...config.health,
        ...(config.listen && 'port' in config.listen ? { port: config.listen.port } : {}),
        ...(socketPath ? { socketPath } : {}),
      }
    : null;
  return {
    rendered: {
      address,
      unit: instanceUnit(config.profile),
      template,
      dropIn,
      releaseDir,
      normalized,
      digest: gatewayDigest(normalized),
      runtimeDigest: runtime,
      credentials: creds.sources,
      health,
      hasReload: config.reload,
    },
    diagnostics,
  };
}

/** The agentvm CA files a profile with injected secrets trusts (decisions/0023), or null. */
function injectionCa(config: GatewayConfig, confined: EgressRenderContext): { cert: string; bundle: string } | null {
  if (!confined.caDir || !config.secrets.some((s) => s.inject)) return null;
  return { cert: path.posix.join(confined.caDir, 'ca.pem'), bundle: path.posix.join(confined.caDir, 'bundle.pem') };
}

/**
 * The credential store and the CA key are out of every confined unit's sight (even where the unit's account owns
 * them: user scope); a profile with injected secrets gets the CA certificate and bundle bound read-only (visible
 * whatever PrivateTmp=/ProtectHome= hide).
 */
function injectionDirectives(config: GatewayConfig, confined: EgressRenderContext): Directive[] {
  const out: Directive[] = [];
  if (confined.credstoreDir) out.push(['InaccessiblePaths', `-${unitPath(confined.credstoreDir)}`]);
  if (confined.caDir) out.push(['InaccessiblePaths', `-${unitPath(path.posix.join(confined.caDir, 'ca.key'))}`]);
  const ca = injectionCa(config, confined);
  if (ca) out.push(['BindReadOnlyPaths', `${unitPath(ca.cert)} ${unitPath(ca.bundle)}`]);
  return out;
}

/** The resource digest of a unit: its template and drop-in, normalised. */
export function gatewayDigest(normalized: NormalizedUnit): string {
  return unitDigest({ unit: normalized });
}

/**
 * Digest of the settings that only take effect when the process starts (restart-table `restart` keys), without
 * RUNTIME_DIGEST_ENV itself. A running process whose environment carries another value runs another config.
 */
export function runtimeDigestOf(...files: ParsedUnit[]): string {
  return runtimeDigestOfNormalized(normalizeUnit(...files));
}

function runtimeDigestOfNormalized(normalized: NormalizedUnit): string {
  const relevant: NormalizedUnit = {};
  for (const [section, keys] of Object.entries(normalized)) {
    for (const [key, values] of Object.entries(keys)) {
      if (keyEffect(section, key) !== 'restart') continue;
      const kept = key === 'Environment' ? values.filter((v) => !v.startsWith(`${RUNTIME_DIGEST_ENV}=`)) : values;
      if (kept.length > 0) (relevant[section] ??= {})[key] = kept;
    }
  }
  return unitDigest({ runtime: relevant }).replace(/^sha256:/, '');
}

/** The release id a drop-in runs, read back from its WorkingDirectory= under `releasesDir/<workload>/`. */
export function releaseIdOf(normalized: NormalizedUnit, releasesDir: string, workload: string): string | null {
  const wd = normalized.Service?.WorkingDirectory?.[0];
  if (!wd) return null;
  const prefix = `${path.posix.join(releasesDir, workload)}/`;
  const unescaped = wd.replaceAll('%%', '%');
  if (!unescaped.startsWith(prefix)) return null;
  const rest = unescaped.slice(prefix.length);
  return rest !== '' && !rest.includes('/') ? rest : null;
}
