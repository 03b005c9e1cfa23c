// Reading a file agentvm was pointed at (a package tarball, a trusted root, a saved plan): only a regular file, only
// up to a size limit, both checked on the open descriptor BEFORE any byte is read. A path naming /dev/zero, a FIFO,
// a socket or a directory is refused at once instead of growing memory until the process dies (issue 18: a
// `tarball: /dev/zero` grew plan to 3 GB in 20 s), and a file that grows while it is read is cut at the limit.
// Invariant: at most `limit` bytes are ever read; the open never blocks (O_NONBLOCK: a FIFO with no writer).

import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';

export class BoundedReadError extends Error {
  constructor(
    message: string,
    readonly reason: 'not-a-regular-file' | 'too-large',
  ) {
    super(message);
    this.name = 'BoundedReadError';
  }
}

const FLAGS = constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY;

function check(path: string, st: { isFile(): boolean; size: number }, limit: number): void {
  if (!st.isFile()) throw new BoundedReadError(`${path} is not a regular file`, 'not-a-regular-file');
  if (st.size > limit) throw new BoundedReadError(`${path} is larger than ${limit} bytes`, 'too-large');
}

/** The bytes of the regular file at `path`, at most `limit` of them. Errors from the file system pass through. */
export async function readRegularFile(path: string, limit: number): Promise<Buffer> {
  const handle = await open(path, FLAGS);
  try {
    const st = await handle.stat();
    check(path, st, limit);
    const buf = Buffer.alloc(Math.min(st.size, limit) + 1);
    let length = 0;
    while (length < buf.length) {
      const { bytesRead } = await handle.read(buf, length, buf.length - length, length);
      if (bytesRead === 0) break;
      length += bytesRead;
    }
    if (length > limit) throw new BoundedReadError(`${path} is larger than ${limit} bytes`, 'too-large');
    return buf.subarray(0, length);
  } finally {
    await handle.close();
  }
}

/** `readRegularFile`, synchronously. */
export function readRegularFileSync(path: string, limit: number): Buffer {
  const fd = openSync(path, FLAGS);
  try {
    const st = fstatSync(fd);
    check(path, st, limit);
    const buf = Buffer.alloc(Math.min(st.size, limit) + 1);
    let length = 0;
    while (length < buf.length) {
      const n = readSync(fd, buf, length, buf.length - length, length);
      if (n === 0) break;
      length += n;
    }
    if (length > limit) throw new BoundedReadError(`${path} is larger than ${limit} bytes`, 'too-large');
    return buf.subarray(0, length);
  } finally {
    closeSync(fd);
  }
}
