// A memo of desired-state documents the secret scan found nothing in: sha256(scanner code, text) (ADR 0027). The scan
// of every string and comment of every document was ≈10% of a no-op plan at 1,000 workloads, for documents that did
// not change since the last plan.
// Invariants:
//   - Only clean documents are remembered (no finding, no span remembered for redaction): skipping a remembered text
//     skips a scan that would report nothing and remember nothing. A document with any finding is scanned every time.
//   - The key covers the text byte for byte and the scanner: the source of the modules that parse a document and
//     detect secrets, and agentvm's version. Another scanner never trusts this one's memo.
//   - Digests only, never a text. Private to the user like the document cache (XDG_CACHE_HOME/agentvm, 0600, a file of
//     another owner ignored); missing, unreadable or corrupt means empty; AGENTVM_NO_CACHE=1 disables it.

import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const FORMAT = 'agentvm-scan-memo/1';
/** Digests kept (≈45 bytes each): the documents of a few large repositories. */
const MAX_ENTRIES = 20_000;
/** Modules whose code decides what the scan finds in a document's text (paths relative to this file). */
const SCANNER_MODULES = [
  './rules/secrets.js',
  '../secrets/secret-detectors.js',
  '../secrets/secret-scan.js',
  '../contracts/yaml-document.js',
  '../../package.json',
];

export interface ScanMemo {
  /** True when exactly this text was scanned clean by this scanner. */
  clean(text: string): boolean;
  /** Remembers a text the scan found nothing in. */
  add(text: string): void;
  /** Writes the memo when something was added (atomic rename; best effort). */
  save(): void;
}

function memoFile(): string | undefined {
  if (process.env.AGENTVM_NO_CACHE === '1') return undefined;
  const base = process.env.XDG_CACHE_HOME || (homedir() ? path.join(homedir(), '.cache') : undefined);
  return base ? path.join(base, 'agentvm', 'secret-scan-clean.json') : undefined;
}

let scannerHash: string | undefined;
/** The scanner's identity: its modules' code. Undefined when it cannot be read (then nothing is memoised). */
function scannerFingerprint(): string | undefined {
  if (scannerHash === undefined) {
    try {
      const h = createHash('sha256').update(FORMAT);
      for (const m of SCANNER_MODULES) h.update('\0').update(moduleSource(m));
      scannerHash = h.digest('hex');
    } catch {
      scannerHash = '';
    }
  }
  return scannerHash || undefined;
}

/** A module's code, built (`.js`) or, run from the sources (tests), `.ts`. */
function moduleSource(relative: string): Buffer {
  const file = fileURLToPath(new URL(relative, import.meta.url));
  try {
    return readFileSync(file);
  } catch (error) {
    if (!file.endsWith('.js')) throw error;
    return readFileSync(file.replace(/\.js$/, '.ts'));
  }
}

const NONE: ScanMemo = { clean: () => false, add: () => undefined, save: () => undefined };

export function openScanMemo(): ScanMemo {
  const file = memoFile();
  const scanner = scannerFingerprint();
  if (!file || !scanner) return NONE;
  const digestOf = (text: string): string =>
    createHash('sha256').update(scanner).update('\0').update(text).digest('base64url');
  let stored: string[] = [];
  try {
    const st = statSync(file);
    if (typeof process.getuid !== 'function' || st.uid === process.getuid()) {
      const doc = JSON.parse(readFileSync(file, 'utf8')) as { format?: unknown; digests?: unknown };
      if (doc.format === FORMAT && Array.isArray(doc.digests))
        stored = doc.digests.filter((d): d is string => typeof d === 'string' && /^[\w-]{43}$/.test(d));
    }
  } catch {
    stored = [];
  }
  const known = new Set(stored);
  const added: string[] = [];
  return {
    clean: (text) => known.has(digestOf(text)),
    add(text) {
      const d = digestOf(text);
      if (known.has(d)) return;
      known.add(d);
      added.push(d);
    },
    save() {
      if (added.length === 0) return;
      // The newest first, so the bound drops the oldest.
      const digests = [...new Set([...added.reverse(), ...stored])].slice(0, MAX_ENTRIES);
      stored = digests;
      added.length = 0;
      const temp = `${file}.${randomBytes(4).toString('hex')}`;
      try {
        mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
        writeFileSync(temp, JSON.stringify({ format: FORMAT, digests }), { mode: 0o600 });
        renameSync(temp, file);
      } catch {
        rmSync(temp, { force: true });
      }
    },
  };
}
