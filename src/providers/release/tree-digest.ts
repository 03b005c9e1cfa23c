// treeDigest: the content identity of a release directory, used to detect hand edits (drift) and to prove a
// rollback restored a release byte for byte.
// Format: `sha256:` + hex sha256 over the entries sorted by the UTF-8 bytes of their relative path, each
//   `<relpath>\0<kind>\0<content sha256 hex>\n`
// kind `f` regular file, `x` regular file with any execute bit, `d` directory (empty hash field).
// Invariants:
//   - Only content, the executable bit and the tree shape count: owners, times and other mode bits do not (sealing
//     a release read-only does not change its digest).
//   - Releases hold regular files and directories only. Anything else found inside (a symlink, a FIFO, a device) is
//     reported in `irregular` AND folded into the digest (`l` with the sha256 of the link target, `s` for special
//     files), so adding one by hand is drift, never invisible. Links are never followed.

import { createHash } from 'node:crypto';
import { createReadStream, lstatSync, readdirSync, readlinkSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { mapBounded } from '../../support/concurrency.js';
import type { StatIndex } from './stat-index.js';

export interface IrregularEntry {
  path: string;
  kind: 'symlink' | 'special';
}

export interface TreeDigest {
  /** `sha256:<64 hex>`. */
  digest: string;
  files: number;
  directories: number;
  bytes: number;
  /** Symlinks and special files found inside (should be empty for a release). */
  irregular: IrregularEntry[];
}

const SMALL_FILE = 1 << 20;
const CONCURRENCY = 16;

interface DigestLine {
  rel: Buffer;
  line: Buffer;
}

async function hashFile(file: string, size: number): Promise<string> {
  if (size <= SMALL_FILE)
    return createHash('sha256')
      .update(await readFile(file))
      .digest('hex');
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/**
 * The digest of the tree under `dir` (which must be a directory; a missing one throws ENOENT). With `index`, a file
 * whose stat the index holds (and that is not racily clean) is not read: its recorded content hash is used; every
 * file read is recorded. The result is the same with or without an index (stat-index.ts).
 */
export async function treeDigest(dir: string, statIndex?: StatIndex): Promise<TreeDigest> {
  const root = path.resolve(dir);
  // Metadata calls are synchronous (ADR 0027): the answer is the same, and an async stat costs a thread-pool round
  // trip several times the system call; a no-op plan makes tens of thousands. File contents are read asynchronously.
  const rootStat = lstatSync(root);
  if (!rootStat.isDirectory()) throw Object.assign(new Error(`${root} is not a directory`), { code: 'ENOTDIR' });

  const records: DigestLine[] = [];
  const irregular: IrregularEntry[] = [];
  const files: Array<{ rel: string; abs: string }> = [];
  let directories = 0;
  let bytes = 0;

  const pending: string[] = [''];
  while (pending.length > 0) {
    const relDir = pending.pop() as string;
    const entries = readdirSync(path.join(root, relDir), { withFileTypes: true });
    for (const entry of entries) {
      const rel = relDir === '' ? entry.name : `${relDir}/${entry.name}`;
      if (entry.isDirectory()) {
        directories++;
        records.push(line(rel, 'd', ''));
        pending.push(rel);
      } else if (entry.isFile()) {
        files.push({ rel, abs: path.join(root, rel) });
      } else if (entry.isSymbolicLink()) {
        irregular.push({ path: rel, kind: 'symlink' });
        const target = readlinkSync(path.join(root, rel));
        records.push(line(rel, 'l', createHash('sha256').update(target).digest('hex')));
      } else {
        irregular.push({ path: rel, kind: 'special' });
        records.push(line(rel, 's', ''));
      }
    }
  }

  const fileRecords: DigestLine[] = new Array(files.length);
  let index = 0;
  const indexed = files.map((f) => ({ ...f, i: index++ }));
  await mapBounded(indexed, CONCURRENCY, async (f) => {
    const stat = lstatSync(f.abs, { bigint: true });
    if (!stat.isFile()) {
      // Replaced while we were reading: report it rather than hash something else.
      irregular.push({ path: f.rel, kind: stat.isSymbolicLink() ? 'symlink' : 'special' });
      fileRecords[f.i] = line(f.rel, 's', '');
      return;
    }
    const size = Number(stat.size);
    bytes += size;
    let sha = statIndex?.lookup(stat);
    if (sha === undefined) {
      sha = await hashFile(f.abs, size);
      statIndex?.record(stat, sha);
    }
    fileRecords[f.i] = line(f.rel, (stat.mode & 0o111n) !== 0n ? 'x' : 'f', sha);
  });
  records.push(...fileRecords);

  records.sort((a, b) => Buffer.compare(a.rel, b.rel));
  const hash = createHash('sha256');
  for (const r of records) hash.update(r.line);
  irregular.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return { digest: `sha256:${hash.digest('hex')}`, files: files.length, directories, bytes, irregular };
}

function line(rel: string, kind: string, contentHash: string): DigestLine {
  const relBytes = Buffer.from(rel, 'utf8');
  return { rel: relBytes, line: Buffer.concat([relBytes, Buffer.from(`\0${kind}\0${contentHash}\n`, 'utf8')]) };
}
