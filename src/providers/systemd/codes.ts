// The stable diagnostic codes of the systemd provider (bots and tests match on them; never renamed).

export const SystemdCode = {
  /** The unit's desired configuration is malformed (a bug upstream, or a hand-made plan). */
  invalidConfig: 'systemd.invalid-config',
  /** A value cannot be written into a unit file safely (newline, control character, unsafe path). */
  unsafeValue: 'systemd.unsafe-value',
  /** The entrypoint would run something outside the profile's one release directory. */
  runtimeSource: 'systemd.runtime-source',
  /** A profile env variable contradicts `listen`, or sets a variable the unit owns (PATH, AGENTVM_*). */
  envConflict: 'systemd.env-conflict',
  /** A secret reference this provider cannot deliver (vault:, an injected secret apply cannot read), or cannot deliver in this scope. */
  secretUnsupported: 'systemd.secret-unsupported',
  /** An egress host that is not an IP address: IPAddressAllow= cannot express it, so it stays denied. */
  egressHostname: 'systemd.egress-hostname',
  /** In user scope the manager accepts but does not enforce IPAddressDeny=/MemoryMax=/TasksMax=. */
  notEnforced: 'systemd.not-enforced',
  /** The release directory the unit must run from is not installed. */
  releaseMissing: 'systemd.release-missing',
  /** agent-gateway@<profile> already belongs to another address (two workloads share a profile name). */
  nameTaken: 'systemd.unit-name-taken',
  /** A second runtime source (a foreign drop-in or unit file) that apply cannot remove (not agentvm's file, or not writable). */
  foreignSource: 'systemd.foreign-source',
  /** systemctl failed. */
  systemctl: 'systemd.systemctl-failed',
  /** The unit did not become active after (re)start. */
  startFailed: 'systemd.start-failed',
  /** The health check did not answer 2xx within its timeout. */
  healthFailed: 'systemd.health-failed',
  /** After a failed health check the unit was rolled back to the previously applied release and configuration. */
  rolledBack: 'systemd.rolled-back',
  /** The automatic rollback did not bring the unit back to health (or there was nothing to roll back to). */
  rollbackFailed: 'systemd.rollback-failed',
  /** A promoted canary did not hold health for its soak time (it was rolled back; the other profiles were not touched). */
  canaryFailed: 'systemd.canary-failed',
  /** AGENTVM_SYSTEMD_USER names no usable account. */
  accountUnknown: 'systemd.account-unknown',
  /** A host prerequisite of the manager is missing (e.g. /run/credentials for sandboxed credentials). */
  hostPrerequisite: 'systemd.host-prerequisite',
  /** A declared program (`kind: program` tool) does not hash to its pin, or is missing: the unit is not started (decisions/0022). */
  toolDigest: 'systemd.tool-digest',
  /** apply could not read an env-file: or injected secret into agentvm's credential store (file missing, variable unset). */
  secretUnreadable: 'systemd.secret-unreadable',
  /** A contract data grant (or the data root, or /srv) does not exist on the host: it is not mounted (ADR 0024). */
  dataMissing: 'systemd.data-missing',
  /** A data grant's host path is or goes through a symlink: it is not mounted, and plan refuses (ADR 0024). */
  dataSymlink: 'systemd.data-symlink',
  /** Another service workload has a read-write grant on a parent of this profile's grant (ADR 0024). */
  dataOverlap: 'systemd.data-overlap',
} as const;
