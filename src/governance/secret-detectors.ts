// Recognises secret values (API keys, tokens, private keys, credentials in URLs, long random strings) and secret
// references (file:, systemd-creds:, credstore:, env-file:, vault:). Pure and allocation-light: every string of
// every document passes through `findSecret`, so one cheap pre-filter runs before the specific patterns.
// Invariant: a finding names the KIND of secret, never the value or any part of it.

export type SecretKind =
  | 'aws-access-key'
  | 'github-token'
  | 'slack-token'
  | 'api-key'
  | 'google-api-key'
  | 'private-key'
  | 'jwt'
  | 'url-credentials'
  | 'high-entropy';

export interface SecretFinding {
  kind: SecretKind;
  /** What it looks like, for a summary: "an AWS access key". */
  label: string;
}

interface Detector {
  kind: SecretKind;
  label: string;
  /** Substrings one of which every match contains: `includes` rejects most strings far faster than a regex. */
  hints: readonly string[];
  pattern: RegExp;
}

const DETECTORS: readonly Detector[] = [
  { kind: 'private-key', label: 'a private key block', hints: ['PRIVATE KEY'], pattern: /-----BEGIN[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----/ },
  { kind: 'aws-access-key', label: 'an AWS access key', hints: ['AKIA', 'ASIA'], pattern: /\b(?:AKIA|ASIA)[0-9A-Z]{16}\b/ },
  { kind: 'github-token', label: 'a GitHub token', hints: ['gh', 'github_pat_'], pattern: /\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{22,})/ },
  { kind: 'slack-token', label: 'a Slack token', hints: ['xox'], pattern: /\bxox[abprs]-[A-Za-z0-9-]{10,}/ },
  {
    kind: 'api-key',
    label: 'an API key (sk-…)',
    hints: ['sk-'],
    pattern: /\bsk-(?:ant-(?:[a-z0-9]+-)?|proj-)?(?=[A-Za-z0-9_-]*[0-9])(?=[A-Za-z0-9_-]*[A-Za-z])[A-Za-z0-9_-]{20,}/,
  },
  { kind: 'google-api-key', label: 'a Google API key', hints: ['AIza'], pattern: /\bAIza[0-9A-Za-z_-]{35}/ },
  { kind: 'jwt', label: 'a JSON Web Token', hints: ['eyJ'], pattern: /\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*/ },
  { kind: 'url-credentials', label: 'a URL with an embedded password or token', hints: ['://'], pattern: /\b[a-z][a-z0-9+.-]*:\/\/[^\s/@:]+:[^\s/@]+@/i },
];

/** Every hint of every detector in one alternation: most strings hold none, and one regex pass says so. */
const ANY_HINT = new RegExp(DETECTORS.flatMap((d) => d.hints).map((h) => h.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')).join('|'));

/** Candidate random strings: long runs of base64/base64url/hex characters. */
const RUN_LENGTH = 32;
const RANDOM_RUN = /[A-Za-z0-9+/=_-]{32,}/g;
const HIGH_ENTROPY_BITS = 4.0;

/**
 * A run made of words (a path like `/srv/Projects2024/agent-pool`), not of random characters: every `/` segment
 * splits on `_ = + -` into words, each lowercase, Capitalised, camelCase or ALLCAPS with digits only at the end.
 * Random tokens change case and mix digits mid-word; words do not.
 */
const WORD = /^(?:[A-Za-z]?[a-z]*(?:[A-Z][a-z]+)*|[A-Z]+)[0-9]*$/;
const WORD_SEPARATORS = /[_=+-]+/;

function isWordy(run: string): boolean {
  // Paths may carry a short random suffix (mkdtemp's `agentvm-XXXXXX`): tolerate up to two such parts of at most
  // eight characters when the run is a path. A 32+ character token has far more non-word parts than that.
  const path = run.includes('/');
  let odd = 0;
  for (const seg of run.split('/')) {
    for (const part of seg.split(WORD_SEPARATORS)) {
      if (WORD.test(part)) continue;
      if (!path || part.length > 8 || ++odd > 2) return false;
    }
  }
  return true;
}

/** Values that are clearly digests: a 40/64-hex object or content hash, or an SRI/`sha256:` digest. */
const DIGEST = /^(?:[0-9a-f]{40}|[0-9a-f]{64}|sha(?:256|384|512)-[A-Za-z0-9+/]+={0,2}|sha256:[0-9a-f]{64})$/;

/** The field names whose values are digests by design (sha256, integrity, commit …). */
export const DIGEST_FIELDS: ReadonlySet<string> = new Set(['sha256', 'sha512', 'integrity', 'commit', 'digest']);

export interface FindOptions {
  /** The value sits in a digest field: a well-formed digest there is expected, not a secret. */
  digestField?: boolean;
}

/** What kind of secret `value` looks like, or undefined. */
export function findSecret(value: string, opts?: FindOptions): SecretFinding | undefined {
  if (value.length < 12) return undefined;
  if (opts?.digestField && DIGEST.test(value)) return undefined;
  if (ANY_HINT.test(value)) {
    for (let i = 0; i < DETECTORS.length; i++) {
      const d = DETECTORS[i]!;
      if (mentions(value, d.hints) && d.pattern.test(value)) return { kind: d.kind, label: d.label };
    }
  }
  if (hasLongRun(value) && hasRandomRun(value)) return { kind: 'high-entropy', label: 'a long random string (a key or token)' };
  return undefined;
}

function mentions(value: string, hints: readonly string[]): boolean {
  for (let i = 0; i < hints.length; i++) if (value.includes(hints[i]!)) return true;
  return false;
}

/** Whether `value` has RUN_LENGTH consecutive base64 characters: a char loop, cheaper than the regex for the common "no". */
function hasLongRun(value: string): boolean {
  if (value.length < RUN_LENGTH) return false;
  let run = 0;
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    const b64 = (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 43 || c === 47 || c === 61 || c === 95 || c === 45;
    run = b64 ? run + 1 : 0;
    if (run >= RUN_LENGTH) return true;
  }
  return false;
}

function hasRandomRun(value: string): boolean {
  RANDOM_RUN.lastIndex = 0;
  for (let m = RANDOM_RUN.exec(value); m !== null; m = RANDOM_RUN.exec(value)) {
    const run = m[0];
    if (!/[A-Z]/.test(run) || !/[a-z]/.test(run) || !/[0-9]/.test(run)) continue;
    if (isWordy(run)) continue;
    if (shannonEntropy(run) > HIGH_ENTROPY_BITS) return true;
  }
  return false;
}

/** Bits per character of `s`. */
export function shannonEntropy(s: string): number {
  const counts = new Map<string, number>();
  for (const c of s) counts.set(c, (counts.get(c) ?? 0) + 1);
  let bits = 0;
  for (const n of counts.values()) {
    const p = n / s.length;
    bits -= p * Math.log2(p);
  }
  return bits;
}

export type SecretScheme = 'file' | 'systemd-creds' | 'credstore' | 'env-file' | 'vault';

export interface SecretReference {
  scheme: SecretScheme;
  /** The host path the value is read from, for schemes that name one (file, systemd-creds, env-file). */
  hostPath?: string;
}

const SCHEME = /^(file|systemd-creds|credstore|env-file|vault):/;
const CREDSTORE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
const ENV_VAR = /^[A-Za-z_][A-Za-z0-9_]*$/;
const VAULT_PATH = /^[A-Za-z0-9][A-Za-z0-9._/-]*$/;
const VAULT_FIELD = /^[A-Za-z0-9._-]+$/;

/** The scheme a ref claims (it may still be malformed), or undefined when it names none. */
export function secretScheme(ref: string): SecretScheme | undefined {
  return SCHEME.exec(ref)?.[1] as SecretScheme | undefined;
}

/**
 * A well-formed reference, or undefined. Shape only: characters that are unsafe in a unit file and `..` segments
 * are the injection rules' concern, so one bad reference is reported once, for what is wrong with it.
 */
export function parseSecretReference(ref: string): SecretReference | undefined {
  const scheme = secretScheme(ref);
  if (!scheme) return undefined;
  const body = ref.slice(scheme.length + 1);
  switch (scheme) {
    case 'file':
    case 'systemd-creds':
      return body.length > 1 && body.startsWith('/') ? { scheme, hostPath: body } : undefined;
    case 'credstore':
      return CREDSTORE_NAME.test(body) ? { scheme } : undefined;
    case 'env-file': {
      const hash = body.lastIndexOf('#');
      const path = body.slice(0, hash);
      return hash > 1 && path.startsWith('/') && ENV_VAR.test(body.slice(hash + 1)) ? { scheme, hostPath: path } : undefined;
    }
    case 'vault': {
      const hash = body.lastIndexOf('#');
      return hash > 0 && VAULT_PATH.test(body.slice(0, hash)) && VAULT_FIELD.test(body.slice(hash + 1)) ? { scheme } : undefined;
    }
  }
}

/** Env variable names that announce a secret: *_TOKEN, *_SECRET, *_PASSWORD, *_API_KEY and kin. */
const SECRET_ENV_NAME = /(?:^|_)(?:TOKEN|SECRET|PASSWORD|PASSWD|PASSPHRASE|API_KEY|APIKEY|PRIVATE_KEY|ACCESS_KEY|SECRET_KEY)$/;

export function isSecretEnvName(name: string): boolean {
  return SECRET_ENV_NAME.test(name);
}

/** A value a secret-named env variable may hold: a reference, a path under $CREDENTIALS_DIRECTORY, or nothing. */
const CREDENTIALS_DIR_PATH = /^\$(?:CREDENTIALS_DIRECTORY|\{CREDENTIALS_DIRECTORY\})\/[A-Za-z0-9][A-Za-z0-9._-]*$/;

export function isSecretEnvReference(value: string): boolean {
  return value === '' || CREDENTIALS_DIR_PATH.test(value) || parseSecretReference(value) !== undefined;
}

const PRIVATE_KEY_BLOCK = /-----BEGIN[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----/;

/** 1-based line of the first private key block in a file's text, or undefined. */
export function privateKeyLine(text: string): number | undefined {
  const m = PRIVATE_KEY_BLOCK.exec(text);
  if (!m) return undefined;
  let line = 1;
  for (let i = 0; i < m.index; i++) if (text.charCodeAt(i) === 10) line++;
  return line;
}
