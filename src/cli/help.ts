// Root help: oclif's command list plus what a first-time user needs — the workflow, exit codes and environment.

import { Help } from '@oclif/core';

const GUIDE = `GETTING STARTED
  agentvm reads a git repository of workload contracts at an exact commit,
  compares it with the live host and the lockfile, and changes nothing until
  you apply a reviewed plan.

    $ agentvm validate --repo fleet                 check YAML, schemas, policy
    $ agentvm plan --repo fleet --host edge-1 --root /tmp/h --out p.json
    $ agentvm apply p.json --root /tmp/h            apply exactly that plan
    $ agentvm drift --repo fleet --host edge-1 --root /tmp/h   exit 2 on drift
    $ agentvm rollback <workload> --host edge-1 --root /tmp/h --auto-approve

  Try it on the bundled example without touching this machine: npm run demo

EXIT CODES
  0 success / no changes   1 error (nothing changed)
  2 changes or drift       3 apply partly failed (re-run apply to converge)

ENVIRONMENT
  AGENTVM_ROOT    default for --root (host root; default /)
  NO_COLOR        plain output        AGENTVM_DEBUG=1  stack traces of bugs

  Every command takes --help and --json (one JSON document on stdout).`;

export default class AgentvmHelp extends Help {
  protected override async showRootHelp(): Promise<void> {
    await super.showRootHelp();
    this.log('');
    this.log(GUIDE);
  }
}
