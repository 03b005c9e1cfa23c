// Diagnostic codes of the egress provider (`egress.server`), for docs/diagnostic-codes.md.
export const EgressCode = {
  invalidConfig: 'egress.invalid-config',
  account: 'egress.account',
  systemctl: 'egress.systemctl',
  startFailed: 'egress.start-failed',
  unsafeUnitValue: 'egress.unsafe-unit-value',
  inboundPortTaken: 'egress.inbound-port-taken',
  /** apply could not make the agentvm CA or an injected host's certificate (openssl missing or failing). */
  certificate: 'egress.certificate',
} as const;
