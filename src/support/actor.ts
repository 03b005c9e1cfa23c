// Who is acting, as `user@host`: recorded by leases, audit records and gate grants. One definition, so the three
// always name the same person the same way.

import os from 'node:os';

/** `user@host`; falls back to $USER or `uid-<n>` where the passwd database does not know the uid (containers). */
export function currentActor(): string {
  let user: string;
  try {
    user = os.userInfo().username;
  } catch {
    user = process.env.USER ?? `uid-${process.getuid?.() ?? 'unknown'}`;
  }
  return `${user}@${os.hostname()}`;
}
