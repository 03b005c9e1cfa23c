// A writer for "newc" cpio archives (the format the Linux kernel unpacks as an initramfs), used to build
// the per-job overlay that is appended to the guest's base initramfs.
// Invariants: every archive ends with the TRAILER!!! entry and its total length is a multiple of 4, so it
// can be followed by another archive; parent directories are emitted before their children; every entry is
// owned by root with a fixed mtime, so the same input gives the same bytes. A symlink's target is stored verbatim.

export interface CpioEntry {
  /** Path inside the archive, relative (no leading `/`), `/`-separated, without `.` or `..` segments. */
  path: string;
  /** File contents; absent for a directory or a symlink. */
  data?: Buffer;
  /** A symbolic link with this target (stored verbatim; the guest resolves it in its own tree). */
  symlink?: string;
  /** Permission bits (default 0o644 for files, 0o755 for directories). */
  mode?: number;
}

const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_IFDIR = 0o040000;
const HEADER_LENGTH = 110;

/** Why a path cannot go into an archive, or undefined when it can. */
export function cpioPathProblem(path: string): string | undefined {
  if (path === '') return 'is empty';
  if (path.includes('\0')) return 'contains a NUL byte';
  if (path.startsWith('/')) return 'is absolute';
  const segments = path.split('/');
  if (segments.some((s) => s === '' || s === '.' || s === '..')) return 'has an empty, "." or ".." segment';
  if (Buffer.byteLength(path) > 4095) return 'is longer than 4095 bytes';
  return undefined;
}

/**
 * Builds a newc archive of `entries`. Directories that a path needs but that are not listed are added.
 * Throws on a path `cpioPathProblem` rejects or on a path given twice: callers validate user input first.
 */
export function writeCpio(entries: readonly CpioEntry[]): Buffer {
  const files = new Map<string, CpioEntry>();
  const directories = new Map<string, number>();
  const given = new Set<string>();
  for (const entry of entries) {
    const problem = cpioPathProblem(entry.path);
    if (problem !== undefined) throw new Error(`cpio path ${JSON.stringify(entry.path)} ${problem}`);
    if (given.has(entry.path)) throw new Error(`cpio path ${JSON.stringify(entry.path)} given twice`);
    given.add(entry.path);
    if (entry.data !== undefined && entry.data.length > 0xffffffff)
      throw new Error(`cpio file ${JSON.stringify(entry.path)} is 4 GiB or larger`);
    const segments = entry.path.split('/');
    for (let i = 1; i < segments.length; i += 1) {
      const parent = segments.slice(0, i).join('/');
      if (files.has(parent)) throw new Error(`cpio path ${JSON.stringify(parent)} is both a file and a directory`);
      if (!directories.has(parent)) directories.set(parent, 0o755);
    }
    if (entry.symlink !== undefined) {
      if (entry.data !== undefined)
        throw new Error(`cpio path ${JSON.stringify(entry.path)} is both a file and a link`);
      if (entry.symlink === '' || entry.symlink.includes('\0'))
        throw new Error(`cpio link ${JSON.stringify(entry.path)} has an empty target or a NUL byte`);
      files.set(entry.path, entry);
    } else if (entry.data === undefined) directories.set(entry.path, entry.mode ?? 0o755);
    else files.set(entry.path, entry);
  }
  for (const path of files.keys()) {
    if (directories.has(path)) throw new Error(`cpio path ${JSON.stringify(path)} is both a file and a directory`);
  }

  const chunks: Buffer[] = [];
  let inode = 1;
  // Sorted, so a directory (a prefix) always precedes what it contains.
  for (const path of [...directories.keys()].sort()) {
    chunks.push(entryBytes(path, S_IFDIR | (directories.get(path) ?? 0o755), Buffer.alloc(0), inode, 2));
    inode += 1;
  }
  for (const path of [...files.keys()].sort()) {
    const entry = files.get(path);
    if (entry?.symlink !== undefined)
      chunks.push(entryBytes(path, S_IFLNK | 0o777, Buffer.from(entry.symlink), inode, 1));
    else if (entry?.data !== undefined)
      chunks.push(entryBytes(path, S_IFREG | (entry.mode ?? 0o644), entry.data, inode, 1));
    else continue;
    inode += 1;
  }
  chunks.push(entryBytes('TRAILER!!!', 0, Buffer.alloc(0), 0, 1));
  return Buffer.concat(chunks);
}

function entryBytes(path: string, mode: number, data: Buffer, inode: number, nlink: number): Buffer {
  const name = Buffer.from(`${path}\0`);
  const fields = [inode, mode, 0, 0, nlink, 0, data.length, 0, 0, 0, 0, name.length, 0];
  const header = Buffer.from(`070701${fields.map((f) => f.toString(16).padStart(8, '0')).join('')}`, 'ascii');
  return Buffer.concat([header, name, zeroPad(HEADER_LENGTH + name.length), data, zeroPad(data.length)]);
}

function zeroPad(length: number): Buffer {
  return Buffer.alloc((4 - (length % 4)) % 4);
}
