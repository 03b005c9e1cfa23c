// Trusted roots for offline Sigstore verification: the public-good root that ships with agentvm (pinned by
// sha256 below) and custom roots supplied by the caller (staging, private Sigstore instances).
// Offline, TUF does not protect the root, so a root is accepted only when
//   - its bytes match the pin, when there is one (the shipped root always has one);
//   - its media type is a trusted-root version we know;
//   - every authority (tlog, ctlog, CA, TSA) has a `validFor.start`: @sigstore/verify 3.1.1 reads a missing
//     start as the beginning of time, which would let a log key vouch for entries from before it existed.

import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import type { Diagnostic } from '../../diagnostics/index.js';
import { SignatureCode, refusal } from './signature-codes.js';

/** sha256 of `assets/trusted_root.public-good.json` (the `trusted_root.json` target of `@sigstore/tuf@4.0.2` seeds). */
export const PUBLIC_GOOD_TRUSTED_ROOT_SHA256 = '6494e21ea73fa7ee769f85f57d5a3e6a08725eae1e38c755fc3517c9e6bc0b66';

/** Where the shipped root lives. Resolves the same from `src/providers/image/` and `dist/providers/image/`. */
export const SHIPPED_TRUSTED_ROOT_PATH = fileURLToPath(
  new URL('../../../assets/trusted_root.public-good.json', import.meta.url),
);

export const TRUSTED_ROOT_MEDIA_TYPES: readonly string[] = [
  'application/vnd.dev.sigstore.trustedroot+json;version=0.1',
  'application/vnd.dev.sigstore.trustedroot.v0.2+json',
];

/**
 * A caller-supplied root. `json` is the parsed root, or its raw text / bytes. A pin (`expectedSha256`) is
 * checked against the raw bytes, so a pinned root must be passed as text or bytes: parsed JSON has no bytes
 * to hash, and a pinned root given that way is refused rather than trusted unchecked.
 */
export interface TrustedRootInput {
  json: unknown;
  expectedSha256?: string;
}

/** A root that passed every check above. `json` is never mutated by the verifier. */
export type TrustedRootResult =
  { ok: true; json: Readonly<Record<string, unknown>>; sha256?: string } | { ok: false; diagnostic: Diagnostic };

/** A root that trusts no authority: enough for key-signed bundles verified with zero thresholds. */
export function emptyTrustedRoot(): Record<string, unknown> {
  return {
    mediaType: TRUSTED_ROOT_MEDIA_TYPES[0],
    tlogs: [],
    certificateAuthorities: [],
    ctlogs: [],
    timestampAuthorities: [],
  };
}

let shipped: TrustedRootResult | undefined;

/**
 * Reads and checks the shipped public-good root against PUBLIC_GOOD_TRUSTED_ROOT_SHA256. The default file is
 * read once per process (only a successful read is remembered); `path` exists so tests can point at a copy.
 */
export async function loadShippedTrustedRoot(path: string = SHIPPED_TRUSTED_ROOT_PATH): Promise<TrustedRootResult> {
  const isDefault = path === SHIPPED_TRUSTED_ROOT_PATH;
  if (isDefault && shipped) return shipped;
  let bytes: Uint8Array;
  try {
    bytes = await readFile(path);
  } catch (err) {
    return {
      ok: false,
      diagnostic: refusal(
        SignatureCode.TrustedRoot,
        `The shipped Sigstore trusted root could not be read (${(err as Error).message}).`,
        `agentvm expects it at ${path}. Reinstall agentvm; the file is part of the package.`,
      ),
    };
  }
  const result = checkTrustedRoot({ json: bytes, expectedSha256: PUBLIC_GOOD_TRUSTED_ROOT_SHA256 }, 'shipped');
  if (isDefault && result.ok) shipped = result;
  return result;
}

/** Checks a caller-supplied root (see TrustedRootInput). Pure; never throws. */
export function checkTrustedRoot(input: TrustedRootInput, origin: 'shipped' | 'custom' = 'custom'): TrustedRootResult {
  const fail = (summary: string, detail: string, path?: string): TrustedRootResult => ({
    ok: false,
    diagnostic: { ...refusal(SignatureCode.TrustedRoot, summary, detail), ...(path ? { path } : {}) },
  });
  const what = origin === 'shipped' ? 'The shipped Sigstore trusted root' : 'The Sigstore trusted root';
  const fix =
    origin === 'shipped'
      ? 'The file is part of agentvm and must not be edited: reinstall agentvm.'
      : "Use an unmodified trusted_root.json from the Sigstore instance that signed the bundle (`cosign trusted-root create` or the instance's TUF repository).";

  let raw = input.json;
  let sha256: string | undefined;
  if (typeof raw === 'string' || raw instanceof Uint8Array) {
    const bytes = typeof raw === 'string' ? Buffer.from(raw, 'utf8') : raw;
    sha256 = createHash('sha256').update(bytes).digest('hex');
    if (input.expectedSha256 !== undefined) {
      const pin = input.expectedSha256.toLowerCase();
      if (!/^[0-9a-f]{64}$/.test(pin)) {
        return fail(
          `${what} has an unusable pin: "${input.expectedSha256}" is not a sha256 (64 hex characters).`,
          'Pin the root with the sha256 of its file, e.g. `sha256sum trusted_root.json`.',
        );
      }
      if (sha256 !== pin) {
        return fail(`${what} does not match its pin: sha256 is ${sha256}, expected ${pin}.`, fix);
      }
    }
    try {
      raw = JSON.parse(Buffer.from(bytes).toString('utf8')) as unknown;
    } catch (err) {
      return fail(`${what} is not valid JSON (${(err as Error).message}).`, fix);
    }
  } else if (input.expectedSha256 !== undefined) {
    return fail(
      `${what} was given as parsed JSON together with a pin; a pin can only be checked against the file's bytes.`,
      'Pass the root as the text or bytes of the file so its sha256 can be checked.',
    );
  }

  if (!isRecord(raw)) return fail(`${what} is not a JSON object.`, fix);
  if (typeof raw.mediaType !== 'string' || !TRUSTED_ROOT_MEDIA_TYPES.includes(raw.mediaType)) {
    return fail(
      `${what} has an unknown media type ${JSON.stringify(raw.mediaType)}.`,
      `Supported: ${TRUSTED_ROOT_MEDIA_TYPES.join(', ')}. ${fix}`,
      '$.mediaType',
    );
  }
  const starts: Array<[list: string, inner: readonly string[]]> = [
    ['tlogs', ['publicKey', 'validFor', 'start']],
    ['ctlogs', ['publicKey', 'validFor', 'start']],
    ['certificateAuthorities', ['validFor', 'start']],
    ['timestampAuthorities', ['validFor', 'start']],
  ];
  for (const [list, inner] of starts) {
    const entries = raw[list];
    if (entries === undefined) continue;
    if (!Array.isArray(entries)) return fail(`${what} has a "${list}" that is not a list.`, fix, `$.${list}`);
    for (const [i, entry] of entries.entries()) {
      const start = dig(entry, inner);
      const path = `$.${list}[${i}].${inner.join('.')}`;
      if (typeof start !== 'string' || !Number.isFinite(Date.parse(start))) {
        return fail(
          `${what} has an authority without a valid validFor.start (${path}).`,
          `An authority without a start date would be trusted for all past time. ${fix}`,
          path,
        );
      }
    }
  }
  return { ok: true, json: raw, ...(sha256 ? { sha256 } : {}) };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function dig(value: unknown, keys: readonly string[]): unknown {
  let current = value;
  for (const key of keys) {
    if (!isRecord(current)) return undefined;
    current = current[key];
  }
  return current;
}
