// Fault injection for the crash-consistency tests: with AGENTVM_FAULT_KILL_AFTER=n the process SIGKILLs itself at the
// n-th durable step it reaches (an audit append, an apply-log batch, a resource applied — apply and rollback call this
// after each). Unset in normal use: then it costs one environment lookup.

let faultSteps = 0;

export function faultPoint(): void {
  const at = process.env.AGENTVM_FAULT_KILL_AFTER;
  if (!at) return;
  faultSteps++;
  if (faultSteps === Number(at)) process.kill(process.pid, 'SIGKILL');
}
