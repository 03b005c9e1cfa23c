// The stable diagnostic codes of the `gate.server` resource (agentvm-gate.service), in addition to GateCode
// (src/gate/codes.ts). Bots and tests match on them; never renamed.

export const GateServerCode = {
  /** A systemctl call for agentvm-gate.service failed (the detail holds its output). */
  systemctl: 'gate.systemctl',
  /** agentvm-gate.service was (re)started and did not come up listening. */
  startFailed: 'gate.start-failed',
  /** The service manager's account cannot be resolved (AGENTVM_SYSTEMD_USER), or cannot reach the gate's state. */
  account: 'gate.account',
} as const;
