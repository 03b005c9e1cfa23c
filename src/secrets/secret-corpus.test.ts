// The secret corpus: at least 200 real-shaped secrets and 200 look-alikes that are not secrets, each in the field it
// would sit in (the detectors read context: a 64-hex value is a pin under `sha256`, a token under `env`). Prints
// the false-positive and false-negative rates and fails above the thresholds below.
// Every value is generated here from a seeded PRNG in the shape real credentials have (prefix, alphabet, length,
// as gitleaks' and trufflehog's rules describe them): none is a live credential, and no secret-shaped literal is
// committed (push protection and scanners of this repository stay quiet).
//
// Thresholds (ADR 0013): false negatives ≤ 1% — a missed secret ends up in a unit file and a lockfile, so the
// scan errs towards flagging; false positives ≤ 2% — every false positive is a refused, correct repository with
// a fix that reads "rewrite it so it does not look like a secret", which users can do but should rarely have to.

import { describe, expect, it } from 'vitest';
import { buildSecretCorpus } from './secret-corpus.fixture.js';
import { findSecret } from './secret-detectors.js';

const MAX_FALSE_NEGATIVE_RATE = 0.01;
const MAX_FALSE_POSITIVE_RATE = 0.02;

describe('the secret corpus', () => {
  const { secrets, lookalikes } = buildSecretCorpus();

  it('holds at least 200 real-shaped secrets and 200 look-alikes', () => {
    expect(secrets.length).toBeGreaterThanOrEqual(200);
    expect(lookalikes.length).toBeGreaterThanOrEqual(200);
  });

  it(`misses at most ${MAX_FALSE_NEGATIVE_RATE * 100}% of secrets and flags at most ${MAX_FALSE_POSITIVE_RATE * 100}% of look-alikes`, () => {
    const missed = secrets.filter((s) => findSecret(s.value, s.opts) === undefined);
    const flagged = lookalikes.filter((s) => findSecret(s.value, s.opts) !== undefined);
    const fn = missed.length / secrets.length;
    const fp = flagged.length / lookalikes.length;
    // Families only: the values themselves are never printed, even synthetic ones.
    console.log(
      `secret corpus: ${secrets.length} secrets, ${lookalikes.length} look-alikes; false negatives ${(fn * 100).toFixed(1)}% (${missed.length}), false positives ${(fp * 100).toFixed(1)}% (${flagged.length})`,
    );
    if (missed.length) console.log(`  missed: ${[...new Set(missed.map((s) => s.family))].join('; ')}`);
    if (flagged.length) console.log(`  flagged: ${[...new Set(flagged.map((s) => s.family))].join('; ')}`);
    expect(fn).toBeLessThanOrEqual(MAX_FALSE_NEGATIVE_RATE);
    expect(fp).toBeLessThanOrEqual(MAX_FALSE_POSITIVE_RATE);
  });
});
