// The stable diagnostic and error codes of the preview gate (bots and tests match on them; never renamed).
// Documented in docs/diagnostic-codes.md, section "Preview gate codes".

export const GateCode = {
  /** A gate resource's desired configuration is malformed (a bug upstream, or a hand-made plan). */
  invalidConfig: 'gate.invalid-config',
  /** `<root>/var/lib/agentvm/gate/routes.json` (or a grant file) is not what agentvm writes. */
  invalidState: 'gate.invalid-state',
  /** `gate grant`/`revoke --preview` named a preview that has no applied route. */
  routeUnknown: 'gate.route-unknown',
  /** The identity to grant is not among the preview's grantees. */
  notGrantee: 'gate.not-grantee',
  /** --ttl is malformed, or longer than the preview's maxTtl. */
  ttlInvalid: 'gate.ttl-invalid',
  /** `gate revoke` named a grant id that does not exist (or was pruned after expiry). */
  grantUnknown: 'gate.grant-unknown',
  /** `gate revoke` was given no target, or more than one. */
  revokeTarget: 'gate.revoke-target',
  /** The server was asked to listen on a non-loopback address without TLS. */
  exposed: 'gate.exposed',
  /** A TLS certificate or key reference cannot be read. */
  tlsReference: 'gate.tls-reference',
  /** The server could not bind its address (in use, not local, no permission). */
  listenFailed: 'gate.listen-failed',
  /** A value cannot be written into the gate's systemd unit safely. */
  unsafeUnitValue: 'gate.unsafe-unit-value',
} as const;
