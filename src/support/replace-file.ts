// Replacing a file so that a reader never sees half of it: the data goes to a temp file in the same directory (same
// filesystem, so rename(2) is atomic), gets its owner, and is renamed over the target; the temp file is removed when
// anything fails. A reader sees the whole old or the whole new content.
// No fsync: this is for files a reader must never see torn — unit files, settings, caches — that apply rewrites when
// they are lost. State that must survive a power loss goes through state/atomic-file.ts (writeFileAtomic), which
// fsyncs the file and its directory.

import { randomBytes } from 'node:crypto';
import { chown, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';

export interface ReplaceFileOptions {
  /** Mode of the new file (default 0o644). */
  mode?: number;
  /** Owner of the new file (a user manager's account); default: the caller. */
  owner?: { uid: number; gid: number } | undefined;
}

/** Replaces `file` with `data` by temp file and rename (see the file comment). */
export async function replaceFile(
  file: string,
  data: string | Uint8Array,
  options: ReplaceFileOptions = {},
): Promise<void> {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.agentvm-${randomBytes(4).toString('hex')}`);
  try {
    await writeFile(tmp, data, { mode: options.mode ?? 0o644 });
    if (options.owner) await chown(tmp, options.owner.uid, options.owner.gid);
    await rename(tmp, file);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}
