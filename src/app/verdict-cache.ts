// Remembered signature verdicts for `plan` (ADR 0010): a successful Sigstore verification is a pure function of its
// inputs — the artifact's sha256, the bundle, who must have signed it (identity + issuer, or the key) and the trusted
// root — so plan keeps the verdicts of those it has seen under the host's cache dir
// (`<root>/var/cache/agentvm/signature-verdicts.json`) and skips the Sigstore libraries when every input matches.
//
// Invariants:
// - Only plan reads it. Apply verifies the exact bytes it installs every time, with no cache: a tampered or stale
//   file here can at worst make a plan look applicable, never get an unverified artifact installed.
// - Only successes are remembered, keyed by a sha256 over every input (and this file's format); a failure is always
//   recomputed, so its diagnostics are fresh and complete.
// - The file is a cache: unreadable, malformed or missing means "no verdicts"; writes are atomic and best effort.

import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { writeFileAtomic } from '../state/atomic-file.js';

const FORMAT = 1;
const MAX_ENTRIES = 1024;
export const VERDICT_CACHE_FILE = 'signature-verdicts.json';

export interface Verdict {
  digest: string;
  signer?: { identity?: string; issuer?: string; keyHint?: string };
  /** Warnings the verification reported (never errors: failures are not remembered). */
  diagnostics: unknown[];
}

interface Stored extends Verdict {
  at: string;
}

/** Everything a verdict depends on. `policy` and `trustedRoot` are text whose hash is taken. */
export interface VerdictInputs {
  artifactSha256: string;
  bundle: string;
  policy: string;
  trustedRoot: string;
  thresholds: string;
}

export function verdictKey(inputs: VerdictInputs): string {
  const h = createHash('sha256').update(`agentvm-verdict-v${FORMAT}\n`);
  for (const part of [inputs.artifactSha256, inputs.bundle, inputs.policy, inputs.trustedRoot, inputs.thresholds]) {
    h.update(createHash('sha256').update(part).digest('hex')).update('\n');
  }
  return h.digest('hex');
}

export class VerdictCache {
  private readonly file: string;
  private entries: Map<string, Stored> | undefined;
  private dirty = false;

  constructor(cacheDir: string) {
    this.file = path.join(cacheDir, VERDICT_CACHE_FILE);
  }

  /** How many verdicts are remembered (plan preloads Sigstore only when there is nothing to reuse). */
  get size(): number {
    return this.load().size;
  }

  get(key: string): Verdict | undefined {
    const found = this.load().get(key);
    return found === undefined
      ? undefined
      : { digest: found.digest, ...(found.signer ? { signer: found.signer } : {}), diagnostics: found.diagnostics };
  }

  remember(key: string, verdict: Verdict): void {
    const entries = this.load();
    entries.delete(key);
    entries.set(key, { ...verdict, at: new Date().toISOString() });
    while (entries.size > MAX_ENTRIES) entries.delete(entries.keys().next().value as string);
    this.dirty = true;
  }

  /** Writes new verdicts, if any. Never throws: a cache that cannot be written is only slower next time. */
  save(): void {
    if (!this.dirty || this.entries === undefined) return;
    try {
      mkdirSync(path.dirname(this.file), { recursive: true });
      writeFileAtomic(
        this.file,
        `${JSON.stringify({ format: FORMAT, verdicts: Object.fromEntries(this.entries) })}\n`,
        { mode: 0o600 },
      );
      this.dirty = false;
    } catch {
      // Best effort (read-only cache dir, disk full): the next plan verifies again.
    }
  }

  private load(): Map<string, Stored> {
    if (this.entries !== undefined) return this.entries;
    this.entries = new Map();
    try {
      const doc = JSON.parse(readFileSync(this.file, 'utf8')) as {
        format?: unknown;
        verdicts?: Record<string, Stored>;
      };
      if (doc.format === FORMAT && doc.verdicts !== null && typeof doc.verdicts === 'object') {
        for (const [key, value] of Object.entries(doc.verdicts)) {
          if (/^[0-9a-f]{64}$/.test(key) && typeof value?.digest === 'string' && Array.isArray(value.diagnostics))
            this.entries.set(key, value);
        }
      }
    } catch {
      // No cache yet, or not one we can read: start empty.
    }
    return this.entries;
  }
}
