// A stdio MCP server in its own sandboxed unit: the gateway spawns `systemd-run --user --pipe` (a transient service
// of the same manager as the profile), so the server gets the hardening and the exec allowlist the caller passes —
// no more rights than the workload's contract — while its stdin/stdout stay the MCP stdio pipe.
// The caller (the future provider of the gateway resource) computes the properties from the workload's tier and
// the server's exec allowlist; this module only builds the argv, so it needs nothing from the providers' layer.
// `runAs` is for a gateway that runs as root in front of a user manager (tests): setpriv to the manager's account.

export interface SystemdRunSandbox {
  /** Unit properties (`-p Key=Value`), e.g. the tier's hardening plus NoExecPaths=/ and ExecPaths=. */
  properties: ReadonlyArray<[string, string]>;
  /** The server's working directory (its release), bound read-only. */
  workingDirectory: string;
  /** Environment of the server (it does not inherit the gateway's). */
  env?: Record<string, string>;
  runAs?: { uid: number; gid: number };
  /** The manager the transient unit belongs to (the one the gateway runs in). Default `user`. */
  scope?: 'user' | 'system';
}

/** The argv wrapper for McpGatewayOptions.sandbox. */
export function systemdRunSandbox(opts: SystemdRunSandbox): (argv: string[]) => string[] {
  return (argv) => [
    ...(opts.runAs ? ['setpriv', `--reuid=${opts.runAs.uid}`, `--regid=${opts.runAs.gid}`, '--init-groups', '--'] : []),
    'systemd-run',
    ...(opts.scope === 'system' ? [] : ['--user']),
    '--pipe',
    '--quiet',
    '--wait',
    '--collect',
    '--service-type=exec',
    `--working-directory=${opts.workingDirectory}`,
    '-p',
    `BindReadOnlyPaths=${opts.workingDirectory}`,
    ...opts.properties.flatMap(([k, v]) => ['-p', `${k}=${v}`]),
    ...Object.entries(opts.env ?? {}).flatMap(([k, v]) => [`--setenv=${k}=${v}`]),
    '--',
    ...argv,
  ];
}
