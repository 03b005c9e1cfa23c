// The verified image store on real files: an entry is trusted only while its stat identity holds; a write to it (even
// one that restores size and mtime) sends the next lookup back to the pinned source; a source that does not hash to
// the pin is never stored.

import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MAX_ENTRIES, storedImage } from './image-store.js';

const sha = (bytes: Buffer): string => createHash('sha256').update(bytes).digest('hex');

describe('verified image store', () => {
  let base = '';
  let store = '';
  beforeEach(() => {
    base = mkdtempSync(join(tmpdir(), 'agentvm-image-store-'));
    store = join(base, 'store');
  });
  afterEach(() => rmSync(base, { recursive: true, force: true }));

  function source(name: string, text: string): { path: string; bytes: Buffer; digest: string } {
    const bytes = Buffer.from(text.repeat(1000));
    const path = join(base, name);
    writeFileSync(path, bytes);
    return { path, bytes, digest: sha(bytes) };
  }

  it('GIVEN a pinned image WHEN looked up twice THEN it is stored once, private, and the second lookup trusts the entry', async () => {
    const kernel = source('vmlinuz', 'kernel bytes ');
    const first = await storedImage(store, kernel.path, kernel.digest);
    expect(first).toMatchObject({ ok: true, outcome: 'stored' });
    const path = first.ok ? first.path : '';
    expect(readFileSync(path)).toEqual(kernel.bytes);
    expect(statSync(store).mode & 0o777).toBe(0o700);
    expect(statSync(path).mode & 0o777).toBe(0o400);
    // The source may go away or change: the entry is the pinned bytes and is used as long as it is untouched.
    writeFileSync(kernel.path, 'something else entirely');
    expect(await storedImage(store, kernel.path, kernel.digest)).toEqual({ ok: true, path, outcome: 'hit' });
  });

  it('GIVEN an entry overwritten with same-size bytes and its mtime restored THEN it is not trusted: the source is hashed again and the entry re-made', async () => {
    const kernel = source('vmlinuz', 'kernel bytes ');
    const first = await storedImage(store, kernel.path, kernel.digest);
    const path = first.ok ? first.path : '';
    const before = statSync(path, { bigint: true });
    chmodSync(path, 0o600);
    writeFileSync(path, Buffer.alloc(kernel.bytes.length, 0x90));
    chmodSync(path, 0o400);
    // Restore the mtime to the nanosecond (utimensat via touch): only the ctime still tells.
    const ns = before.mtimeNs;
    const touched = spawnSync('touch', [
      '-m',
      '-d',
      `@${ns / 1_000_000_000n}.${String(ns % 1_000_000_000n).padStart(9, '0')}`,
      path,
    ]);
    expect(touched.status).toBe(0);
    const after = statSync(path, { bigint: true });
    expect([after.size, after.mtimeNs, after.mode, after.ino]).toEqual([
      before.size,
      before.mtimeNs,
      before.mode,
      before.ino,
    ]);
    expect(after.ctimeNs).not.toBe(before.ctimeNs);

    const again = await storedImage(store, kernel.path, kernel.digest);
    expect(again).toEqual({ ok: true, path, outcome: 'stored' });
    expect(sha(readFileSync(path))).toBe(kernel.digest);
  });

  it('GIVEN a tampered entry and a source that no longer matches the pin THEN the lookup fails with the actual digest, and the entry is not used until a matching source re-makes it', async () => {
    const kernel = source('vmlinuz', 'kernel bytes ');
    const first = await storedImage(store, kernel.path, kernel.digest);
    const path = first.ok ? first.path : '';
    chmodSync(path, 0o600);
    writeFileSync(path, 'tampered');
    writeFileSync(kernel.path, 'replaced source');
    expect(await storedImage(store, kernel.path, kernel.digest)).toEqual({
      ok: false,
      reason: 'mismatch',
      actual: sha(Buffer.from('replaced source')),
    });
    expect(await storedImage(store, kernel.path, kernel.digest)).toMatchObject({ ok: false, reason: 'mismatch' });
    expect(readdirSync(store).filter((n) => n.startsWith('.tmp-'))).toEqual([]);

    writeFileSync(kernel.path, kernel.bytes);
    expect(await storedImage(store, kernel.path, kernel.digest)).toEqual({ ok: true, path, outcome: 'stored' });
    expect(readFileSync(path)).toEqual(kernel.bytes);
  });

  it('GIVEN a missing source and no entry THEN the lookup says it is unreadable', async () => {
    expect(await storedImage(store, join(base, 'absent'), 'a'.repeat(64))).toEqual({
      ok: false,
      reason: 'unreadable',
      code: 'ENOENT',
    });
  });

  it(`GIVEN more than ${MAX_ENTRIES} pins over time THEN the store keeps the ${MAX_ENTRIES} most recently used`, async () => {
    const digests: string[] = [];
    for (let i = 0; i <= MAX_ENTRIES; i++) {
      const image = source(`image-${i}`, `image ${i} `);
      digests.push(image.digest);
      expect(await storedImage(store, image.path, image.digest)).toMatchObject({ ok: true });
      // Recency is the identity file's mtime: make the order explicit rather than depend on the clock's resolution.
      utimesSync(join(store, `${image.digest}.id`), 1_000_000 + i, 1_000_000 + i);
    }
    const kept = readdirSync(store).filter((n) => /^[0-9a-f]{64}$/.test(n));
    expect(kept.sort()).toEqual(digests.slice(1).sort());
  });
});
