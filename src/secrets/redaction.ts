// The one redaction boundary. Everything agentvm prints (text, JSON, markdown, error messages of every layer) and
// every plan file it saves passes through `redactText`/`redactValue` on its way out (cli/base-command.ts,
// app/plan.ts writePlanFile, the TTY plan view).
// Two nets, both by VALUE, never by key name:
// 1. every value a secret detector flagged while this process scanned the desired state (`rememberSecret`, fed by
//    the secret scan, comments and files included) is masked wherever it appears — a schema error quoting it, a
//    plan config holding it, a markdown table showing it;
// 2. every context-free secret shape (prefix tokens, private key blocks, URL userinfo, `password=` assignments)
//    is masked even if no scan saw it (a value typed on the command line, a message from git).
// Entropy is not a net here: digests and signatures are random by nature and are legitimate output.
// Invariant: linear in the output size times the (small) number of remembered secrets.

import { findSecretSpans } from './secret-detectors.js';

export const REDACTED = '[redacted]';

/** Values flagged in this process. Shorter ones are not remembered: masking `admin` everywhere would garble output. */
const remembered = new Set<string>();
const MIN_REMEMBERED = 6;
let ordered: string[] | undefined;

export function rememberSecret(value: string): void {
  if (value.length < MIN_REMEMBERED || value === REDACTED || remembered.has(value)) return;
  remembered.add(value);
  ordered = undefined;
}

/** For tests: forget what earlier scans in this process flagged. */
export function forgetSecrets(): void {
  remembered.clear();
  ordered = undefined;
}

/** `text` with every remembered secret and every secret shape replaced by `[redacted]`. */
export function redactText(text: string): string {
  let out = text;
  if (remembered.size > 0) {
    // Longest first, so a secret that contains another is masked whole.
    ordered ??= [...remembered].sort((a, b) => b.length - a.length);
    for (const secret of ordered) if (out.includes(secret)) out = out.split(secret).join(REDACTED);
  }
  const spans = findSecretSpans(out, { shapesOnly: true });
  if (spans.length === 0) return out;
  let result = '';
  let last = 0;
  for (const s of spans) {
    if (s.end <= last) continue;
    result += out.slice(last, Math.max(last, s.start)) + REDACTED;
    last = s.end;
  }
  return result + out.slice(last);
}

/** A deep copy of `value` with every string (and every object key) passed through `redactText`. */
export function redactValue<T>(value: T): T {
  return redactNode(value) as T;
}

function redactNode(node: unknown): unknown {
  if (typeof node === 'string') return redactText(node);
  if (Array.isArray(node)) return node.map(redactNode);
  if (node !== null && typeof node === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(node as Record<string, unknown>)) out[redactText(k)] = redactNode(v);
    return out;
  }
  return node;
}
