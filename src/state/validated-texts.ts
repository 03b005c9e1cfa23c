// A memo of lockfile texts that passed the lockfile schema: sha256(text) → "valid" (ADR 0027). A no-op plan reads
// the same lockfile again and again (drift timers, pull-request bots); its schema check (loading zod, building the
// validator from schemas/lockfile.schema.json, walking thousands of entries) costs as much as the rest of reading it.
// Invariants:
//   - An optimisation only: a hit is a text byte-for-byte equal to one that passed the same schema files under the same
//     format version (both are in the memo's key), and validation is deterministic, so skipping it changes no answer.
//     Every other check of the lockfile (its host, its keys) still runs. A missing, unreadable, foreign or corrupt
//     memo is an empty one; AGENTVM_NO_CACHE=1 disables it.
//   - Holds digests only, never a text (and a lockfile holds no secret value anyway).
//   - Private to the user, like the document cache: XDG_CACHE_HOME/agentvm, 0600, a file of another owner is ignored.

import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import path from 'node:path';
import { schemaText, type StateSchema } from './state-schemas.js';

const FORMAT = 'agentvm-validated-texts/1';
/** Digests kept, most recent first: a few hosts' lockfiles and their last versions. */
const MAX_DIGESTS = 64;

function memoFile(): string | undefined {
  if (process.env.AGENTVM_NO_CACHE === '1') return undefined;
  const base = process.env.XDG_CACHE_HOME || (homedir() ? path.join(homedir(), '.cache') : undefined);
  return base ? path.join(base, 'agentvm', 'validated-lockfiles.json') : undefined;
}

export interface ValidatedTexts {
  /** True when exactly this text passed `schema` before (with this agentvm's schema files and format). */
  has(text: string): boolean;
  /** Remembers that `text` passed (best effort: a memo that cannot be written is simply not kept). */
  add(text: string): void;
}

/** The memo for one schema, keyed by that schema file's text and `version`. */
export function validatedTexts(schema: StateSchema, version: number): ValidatedTexts {
  const file = memoFile();
  const key = createHash('sha256').update(`${FORMAT}\0${version}\0`).update(schemaText(schema)).digest('hex');
  const digestOf = (text: string): string => createHash('sha256').update(text).digest('hex');
  const load = (): string[] => {
    if (!file) return [];
    try {
      const st = statSync(file);
      if (typeof process.getuid === 'function' && st.uid !== process.getuid()) return [];
      const doc = JSON.parse(readFileSync(file, 'utf8')) as { format?: unknown; key?: unknown; digests?: unknown };
      if (doc.format !== FORMAT || doc.key !== key || !Array.isArray(doc.digests)) return [];
      return doc.digests.filter((d): d is string => typeof d === 'string' && /^[0-9a-f]{64}$/.test(d));
    } catch {
      return [];
    }
  };
  return {
    has(text) {
      if (!file) return false;
      return load().includes(digestOf(text));
    },
    add(text) {
      if (!file) return;
      const digest = digestOf(text);
      const digests = [digest, ...load().filter((d) => d !== digest)].slice(0, MAX_DIGESTS);
      const temp = `${file}.${randomBytes(4).toString('hex')}`;
      try {
        mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
        writeFileSync(temp, JSON.stringify({ format: FORMAT, key, digests }), { mode: 0o600 });
        renameSync(temp, file);
      } catch {
        rmSync(temp, { force: true });
      }
    },
  };
}
