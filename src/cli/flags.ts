// Flags shared by commands that read the desired-state repository.

import { Flags } from '@oclif/core';

export const repoFlags = {
  repo: Flags.string({
    summary: 'Path of the desired-state git repository.',
    default: '.',
    helpValue: 'PATH',
  }),
  ref: Flags.string({
    summary: 'Git ref to read (resolved to an exact commit), or WORKTREE for uncommitted files.',
    description:
      "Branches, tags and expressions like HEAD~1 are resolved to a 40-hex commit once, and every file is read from that commit's tree — never from a checkout. WORKTREE reads the working tree for local iteration; results are marked uncommitted.",
    default: 'HEAD',
    helpValue: 'REF',
  }),
};

export const hostFlags = {
  host: Flags.string({
    summary: 'Host to plan for (hosts/<name>.yaml). Optional when the repository defines one host.',
    helpValue: 'NAME',
  }),
  root: Flags.string({
    summary: 'Host root: state, releases, audit log and units live under it.',
    description:
      'Default `/` manages this machine. Point it at a temporary directory to try agentvm without touching the host.',
    default: '/',
    helpValue: 'DIR',
    env: 'AGENTVM_ROOT',
  }),
};

/** The state backend (ADR 0017): local files under --root (default) or PostgreSQL. The URL itself never goes in a flag. */
export const stateFlags = {
  'state-backend': Flags.string({
    summary: 'Where state lives: local files under --root, or PostgreSQL (fleets).',
    description:
      "Default: the repository's agentvm.yaml `spec.state`, else local. PostgreSQL reads its URL from the variable --state-url names.",
    options: ['local', 'postgres'],
    env: 'AGENTVM_STATE_BACKEND',
    helpValue: 'KIND',
  }),
  'state-url': Flags.string({
    summary: 'Environment variable holding the PostgreSQL URL, as env:NAME.',
    description:
      'Default env:AGENTVM_PG_URL. Keep credentials out of the URL (~/.pgpass or PGPASSWORD); the URL is never printed.',
    env: 'AGENTVM_STATE_URL',
    helpValue: 'env:NAME',
  }),
};
