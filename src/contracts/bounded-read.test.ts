// Bounded reads: only a regular file, only up to the limit, both checked before reading. /dev/zero, a FIFO with no
// writer (the open must not block), a directory and an oversized file are refused; a normal file is read whole.

import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BoundedReadError, readRegularFile, readRegularFileSync } from './bounded-read.js';

const dir = mkdtempSync(join(tmpdir(), 'agentvm-bounded-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('readRegularFile', () => {
  it('reads a regular file within the limit, whole', async () => {
    writeFileSync(join(dir, 'small'), 'hello');
    expect((await readRegularFile(join(dir, 'small'), 5)).toString()).toBe('hello');
    expect(readRegularFileSync(join(dir, 'small'), 5).toString()).toBe('hello');
  });

  it.each([
    ['/dev/zero', 'not-a-regular-file'],
    ['/dev/urandom', 'not-a-regular-file'],
    ['/proc/self', 'not-a-regular-file'],
  ])('refuses %s before reading a byte', async (path, reason) => {
    await expect(readRegularFile(path, 1024)).rejects.toMatchObject({ reason });
    expect(() => readRegularFileSync(path, 1024)).toThrow(BoundedReadError);
  });

  it('refuses a FIFO with no writer without blocking on the open', async () => {
    const fifo = join(dir, 'fifo');
    execFileSync('mkfifo', [fifo]);
    await expect(readRegularFile(fifo, 1024)).rejects.toMatchObject({ reason: 'not-a-regular-file' });
    expect(() => readRegularFileSync(fifo, 1024)).toThrow(BoundedReadError);
  });

  it('refuses a file over the limit by its size, before reading it', async () => {
    writeFileSync(join(dir, 'big'), Buffer.alloc(2048));
    await expect(readRegularFile(join(dir, 'big'), 1024)).rejects.toMatchObject({ reason: 'too-large' });
    expect(() => readRegularFileSync(join(dir, 'big'), 1024)).toThrow(/larger than 1024 bytes/);
  });
});
