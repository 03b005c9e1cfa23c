// The document cache across runs of different repositories: a run keeps what other runs stored (a bot planning two
// repositories in turn hits on both), and the file stays bounded.
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openDocumentCache } from './document-cache.js';

describe('document cache', () => {
  let dir: string;
  let saved: string | undefined;
  beforeEach(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'agentvm-doc-cache-'));
    saved = process.env.XDG_CACHE_HOME;
    process.env.XDG_CACHE_HOME = dir;
  });
  afterEach(() => {
    if (saved === undefined) delete process.env.XDG_CACHE_HOME;
    else process.env.XDG_CACHE_HOME = saved;
    rmSync(dir, { recursive: true, force: true });
  });

  it("a run of another repository keeps the first one's entries", () => {
    const a = openDocumentCache();
    a.put('Host', 'kind: Host # repository A', { a: 1 });
    a.save();
    const b = openDocumentCache();
    expect(b.get('Host', 'kind: Host # repository B')).toBeUndefined();
    b.put('Host', 'kind: Host # repository B', { b: 1 });
    b.save();
    const again = openDocumentCache();
    expect(again.get('Host', 'kind: Host # repository A')).toEqual({ a: 1 });
    expect(again.get('Host', 'kind: Host # repository B')).toEqual({ b: 1 });
  });
});
