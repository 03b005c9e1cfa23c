// The secret scan is linear in its input (issue 18: a 1 MB description took 410 s). Proved by counting the
// characters the scanners visit (`scanWork`), never by timing: for each hostile shape — long runs of the very
// prefixes, separators and alphabets the detectors look for — doubling the input at most doubles the work, and the
// work stays within a small constant per character. bench/validate.js measures the wall-clock ratio.

import { describe, expect, it } from 'vitest';
import { redactText } from './redaction.js';
import { findSecretSpans, scanWork } from './secret-detectors.js';
import { holdsSecret } from './secret-scan.js';

/** Patterns that made the old regex scan quadratic, and ones aimed at every detector's loop. */
const HOSTILE: Record<string, string> = {
  'sk- prefixes': 'sk-',
  'JWT starts': 'eyJ-',
  'JWT dots': 'eyJa.',
  'URL schemes': 'a://',
  'URL userinfo': 'a://b:c@',
  github_pat_: 'github_pat_',
  'glpat-': 'glpat-',
  'keyword assignments': 'token=',
  bearer: 'Bearer ',
  'base64 run': 'aB3+',
  'hex run': 'a1f',
  'path segments': '/aB3',
  'private key header': '-----BEGIN ',
  'comment marks': ' #',
  AKIA: 'AKIA',
  'sha markers': 'sha256:',
};

const PER_CHAR = 16;

function workFor(pattern: string, length: number, scan: (text: string) => void): number {
  const text = pattern.repeat(Math.ceil(length / pattern.length)).slice(0, length);
  scanWork(true);
  scan(text);
  return scanWork(true);
}

describe('secret scanning is linear in the input', () => {
  const scanners: Record<string, (text: string) => void> = {
    'findSecretSpans (structured)': (t) => findSecretSpans(t, { field: 'description' }),
    'findSecretSpans (shapes only)': (t) => findSecretSpans(t, { shapesOnly: true }),
    'holdsSecret (the cache gate)': (t) => holdsSecret({ description: t }, t),
    'redactText (the output boundary)': (t) => redactText(t),
  };
  for (const [scanner, scan] of Object.entries(scanners)) {
    it.each(Object.entries(HOSTILE))(`${scanner}: %s`, (_name, pattern) => {
      const n = 100_000;
      const one = workFor(pattern, n, scan);
      const two = workFor(pattern, 2 * n, scan);
      expect(one, 'work per character').toBeLessThanOrEqual(PER_CHAR * n);
      // Linear: twice the input, at most twice the work (plus slack for a constant term).
      expect(two).toBeLessThanOrEqual(2 * one + 1000);
    });
  }
});
