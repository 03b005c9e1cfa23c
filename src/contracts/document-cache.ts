// A content-addressed cache of documents that parsed and passed their schema cleanly: sha256(kind, text) → value.
// Validating a commit then costs work proportional to what changed since the last run, not to the repository
// size (YAML parsing dominates otherwise: ~0.2 ms per small document). Positions are not cached — a cached
// document is re-parsed lazily, only if a later check needs a location.
// Cached values are shared, not copied: desired-state documents are never mutated after loading.
// Invariants: the key covers the document kind, its exact text and the exact schema files (and agentvm's format
// version), so a hit is always what a fresh parse would give; only documents with no diagnostics are cached; the
// cache is private to the user (0600, owner-checked) and any problem reading or writing it just means a miss.
// Disabled with AGENTVM_NO_CACHE=1.

import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { loadSchema, SCHEMA_FILES, type DocumentKind } from './schemas.js';

const FORMAT = 'agentvm-document-cache-v1';
/** Entries kept at most (≈0.3 KiB each for small documents). */
const MAX_ENTRIES = 20_000;

export interface DocumentCache {
  get(kind: DocumentKind, text: string): unknown;
  put(kind: DocumentKind, text: string, value: unknown): void;
  /**
   * Persists the entries used or added in this run, then as many of the others it read as fit under MAX_ENTRIES: two
   * repositories planned in turn (a pull-request bot, a drift timer) keep each other's entries, and the file is bounded.
   */
  save(): void;
}

function cacheFile(): string | undefined {
  if (process.env.AGENTVM_NO_CACHE === '1') return undefined;
  const base = process.env.XDG_CACHE_HOME || (homedir() ? join(homedir(), '.cache') : undefined);
  return base ? join(base, 'agentvm', 'documents.json') : undefined;
}

let schemaHash: string | undefined;
function schemasFingerprint(): string {
  if (!schemaHash) {
    const h = createHash('sha256').update(FORMAT);
    for (const f of Object.values(SCHEMA_FILES).sort()) h.update(JSON.stringify(loadSchema(f)));
    schemaHash = h.digest('hex');
  }
  return schemaHash;
}

const key = (kind: DocumentKind, text: string): string =>
  createHash('sha256').update(kind).update('\0').update(text).digest('base64url');

export function openDocumentCache(): DocumentCache {
  const file = cacheFile();
  let stored: Record<string, unknown> = {};
  const used: Record<string, unknown> = {};
  let dirty = false;
  if (file) {
    try {
      const st = statSync(file);
      if (typeof process.getuid !== 'function' || st.uid === process.getuid()) {
        const parsed = JSON.parse(readFileSync(file, 'utf8')) as {
          format?: string;
          schemas?: string;
          entries?: Record<string, unknown>;
        };
        if (
          parsed.format === FORMAT &&
          parsed.schemas === schemasFingerprint() &&
          parsed.entries &&
          typeof parsed.entries === 'object'
        )
          stored = parsed.entries;
      }
    } catch {
      stored = {};
    }
  }
  return {
    get(kind, text) {
      if (!file) return undefined;
      const k = key(kind, text);
      if (!(k in stored)) return undefined;
      if (!(k in used)) used[k] = stored[k];
      return stored[k];
    },
    put(kind, text, value) {
      if (!file) return;
      used[key(kind, text)] = value;
      dirty = true;
    },
    save() {
      if (!file) return;
      if (!dirty) return;
      try {
        mkdirSync(join(file, '..'), { recursive: true, mode: 0o700 });
        const temp = `${file}.${process.pid}.tmp`;
        const entries: Record<string, unknown> = { ...used };
        let room = MAX_ENTRIES - Object.keys(entries).length;
        for (const k of Object.keys(stored)) {
          if (room <= 0) break;
          if (k in entries) continue;
          entries[k] = stored[k];
          room--;
        }
        writeFileSync(temp, JSON.stringify({ format: FORMAT, schemas: schemasFingerprint(), entries }), {
          mode: 0o600,
        });
        renameSync(temp, file);
      } catch {
        // A cache that cannot be written is only a slower next run.
      }
    },
  };
}
