// Who may touch the gate's runtime state. agentvm-gate.service runs as its service manager's account: root in system
// scope, the account itself in user scope. When agentvm runs as that account, or as root for the system manager, the
// files it writes already belong to the right user and nothing is done here. When agentvm runs as root on behalf of
// a user manager's account (AGENTVM_SYSTEMD_USER: the endpoint's `fileOwner`), the server would find root's 0640/0750
// files unreadable, so the gate's state directory and the host's audit directory are shared with the account's group:
//   - `<gate dir>` and `<gate dir>/grants`: group = the account's group, mode 2770 (setgid: every file root writes
//     later — routes.json, server.json, a grant of `gate grant` — gets that group, and its 0640 lets the server read
//     it; the server creates its markers and listener.json there);
//   - `<audit dir>`: the same (the server appends request records and takes the append lock there), and the audit
//     log itself 0660 with that group (it is created here when missing, so root never creates it 0640 later);
//   - directories between the host root and those, when the account cannot search them: o+x (search, not read).
// Consequence, stated in decisions/0008-preview-gate.md: in user scope the gate and the workloads run as one account,
// so that account can also write grants and the audit log; `agentvm audit verify` detects an edit of the log, not a
// grant written by hand. Hosts that need the gate separated from the agents use system scope.

import { chmodSync, chownSync, closeSync, mkdirSync, openSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import type { GatePaths } from '../../gate/paths.js';

export interface StateOwner {
  uid: number;
  gid: number;
}

/** Creates the gate's directories and, for `owner`, shares them as described above. Returns what it changed. */
export function prepareGateState(paths: GatePaths, root: string, owner: StateOwner | undefined): string[] {
  mkdirSync(paths.grants, { recursive: true, mode: 0o750 });
  if (!owner) return [];
  const changed: string[] = [];
  const auditDir = path.dirname(paths.audit);
  mkdirSync(auditDir, { recursive: true, mode: 0o750 });
  for (const dir of [paths.dir, paths.grants, auditDir]) {
    if (shareDir(dir, owner.gid)) changed.push(`${dir} shared with group ${owner.gid} (2770)`);
  }
  // Files root wrote before the directories were shared (a route table, grants, the settings).
  for (const dir of [paths.dir, paths.grants]) {
    for (const name of readdirSync(dir)) {
      const file = path.join(dir, name);
      const st = statSync(file);
      if (st.isFile() && st.gid !== owner.gid) chownSync(file, -1, owner.gid);
    }
  }
  closeSync(openSync(paths.audit, 'a', 0o660));
  const log = statSync(paths.audit);
  if (log.gid !== owner.gid) chownSync(paths.audit, -1, owner.gid);
  if ((log.mode & 0o060) !== 0o060) {
    chmodSync(paths.audit, (log.mode & 0o7777) | 0o060);
    changed.push(`${paths.audit} made writable by group ${owner.gid}`);
  }
  const top = path.resolve(root);
  for (const target of [paths.dir, auditDir]) {
    for (let dir = path.dirname(target); dir.startsWith(top) && dir !== path.dirname(dir); dir = path.dirname(dir)) {
      const st = statSync(dir);
      const searchable =
        (st.mode & 0o001) !== 0 || (st.gid === owner.gid && (st.mode & 0o010) !== 0) || st.uid === owner.uid;
      if (!searchable) {
        chmodSync(dir, (st.mode & 0o7777) | 0o001);
        changed.push(`${dir} made searchable (o+x)`);
      }
      if (dir === top) break;
    }
  }
  return changed;
}

function shareDir(dir: string, gid: number): boolean {
  const st = statSync(dir);
  if (st.gid === gid && (st.mode & 0o7777) === 0o2770) return false;
  if (st.gid !== gid) chownSync(dir, -1, gid);
  chmodSync(dir, 0o2770);
  return true;
}
