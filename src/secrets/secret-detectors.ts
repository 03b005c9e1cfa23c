// Recognises secret values (API keys, tokens, private keys, credentials in URLs, long random strings) and secret
// references (file:, systemd-creds:, credstore:, env-file:, vault:). Every string of every document, every key
// name, every YAML comment and every other committed file passes through here, and so does every byte agentvm
// prints or writes (the redaction boundary, redaction.ts).
//
// Invariants:
// - A finding names the KIND of secret, never the value or any part of it.
// - Every scan is linear in the input length. No regular expression here runs with an unbounded quantifier from
//   an attacker-chosen number of start positions: shapes are found by a fixed-length prefix, the token behind it is
//   measured by one character loop that never revisits a character (a later prefix inside a token already measured
//   is skipped), and only a bounded head of each token meets a regular expression. `scanWork()` counts the
//   characters visited so a test can prove the bound by counting, not by timing (ADR 0013).
// - Shapes (prefix-identified tokens, private key blocks, URL userinfo) need no context, so the output boundary
//   uses them on any text. Entropy needs context (the field a value sits in: a 64-hex value is a pin under
//   `sha256:` and a token under `env:`), so only structured scans use it.

export type SecretKind =
  | 'aws-access-key'
  | 'github-token'
  | 'gitlab-token'
  | 'slack-token'
  | 'api-key'
  | 'google-api-key'
  | 'google-oauth-token'
  | 'stripe-key'
  | 'package-registry-token'
  | 'cloud-token'
  | 'private-key'
  | 'jwt'
  | 'url-credentials'
  | 'keyword-assignment'
  | 'high-entropy'
  | 'high-entropy-hex';

export interface SecretFinding {
  kind: SecretKind;
  /** What it looks like, for a summary: "an AWS access key". */
  label: string;
}

export interface SecretSpan extends SecretFinding {
  start: number;
  end: number;
}

/** Characters a token body may be made of; each shape names one class. */
type Charset = 'alnum' | 'upper-alnum' | 'hex' | 'b64url' | 'b64url-dot' | 'slack';

interface Shape {
  kind: SecretKind;
  label: string;
  /** A fixed-length, global pattern for the token's start (no quantifiers beyond single characters). */
  prefix: RegExp;
  body: Charset;
  /** Characters of body needed after the prefix. */
  min: number;
  /** Extra test on the token's head (at most HEAD characters), e.g. "mixes letters and digits". */
  check?: (head: string) => boolean;
}

/** The most characters of one token any check looks at: bounds the regex work per token. */
const HEAD = 256;

const hasDigitAndLetter = (s: string): boolean => /[0-9]/.test(s) && /[A-Za-z]/.test(s);

// Shapes learned from gitleaks' and trufflehog's rule sets (their prefixes and body alphabets; none of their code).
const SHAPES: readonly Shape[] = [
  {
    kind: 'aws-access-key',
    label: 'an AWS access key',
    prefix: /(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])/g,
    body: 'upper-alnum',
    min: 16,
  },
  { kind: 'github-token', label: 'a GitHub token', prefix: /gh[pousr]_/g, body: 'alnum', min: 30 },
  { kind: 'github-token', label: 'a GitHub token', prefix: /github_pat_/g, body: 'b64url', min: 22 },
  {
    kind: 'gitlab-token',
    label: 'a GitLab token',
    prefix: /gl(?:pat|ptt|rt|dt|cbt|ft|imt|oas|soat|agent|ffct)-/g,
    body: 'b64url',
    min: 20,
  },
  { kind: 'gitlab-token', label: 'a GitLab token', prefix: /GR1348941/g, body: 'b64url', min: 20 },
  { kind: 'slack-token', label: 'a Slack token', prefix: /xox[abposre]-/g, body: 'slack', min: 10 },
  { kind: 'slack-token', label: 'a Slack token', prefix: /xapp-\d-/g, body: 'slack', min: 10 },
  {
    kind: 'slack-token',
    label: 'a Slack webhook URL',
    prefix: /hooks\.slack\.com\/(?:services|workflows|triggers)\//g,
    body: 'b64url-dot',
    min: 20,
  },
  {
    kind: 'api-key',
    label: 'an API key (sk-…)',
    prefix: /sk-(?:ant-(?:api\d\d-|admin\d\d-|oat\d\d-)?|proj-|svcacct-|admin-|or-v1-)?/g,
    body: 'b64url',
    min: 20,
    check: hasDigitAndLetter,
  },
  { kind: 'stripe-key', label: 'a Stripe key', prefix: /(?:sk|rk)_(?:live|test|prod)_/g, body: 'alnum', min: 16 },
  { kind: 'stripe-key', label: 'a webhook signing secret', prefix: /whsec_/g, body: 'alnum', min: 24 },
  { kind: 'google-api-key', label: 'a Google API key', prefix: /AIza/g, body: 'b64url', min: 35 },
  { kind: 'google-oauth-token', label: 'a Google OAuth token', prefix: /ya29\./g, body: 'b64url', min: 20 },
  { kind: 'google-oauth-token', label: 'a Google OAuth client secret', prefix: /GOCSPX-/g, body: 'b64url', min: 24 },
  { kind: 'package-registry-token', label: 'an npm token', prefix: /npm_/g, body: 'alnum', min: 36 },
  { kind: 'package-registry-token', label: 'a PyPI token', prefix: /pypi-AgE/g, body: 'b64url', min: 50 },
  { kind: 'package-registry-token', label: 'a Docker Hub token', prefix: /dckr_pat_/g, body: 'b64url', min: 20 },
  {
    kind: 'api-key',
    label: 'a Hugging Face token',
    prefix: /hf_/g,
    body: 'alnum',
    min: 30,
    check: (h) => /^[A-Za-z]{30}/.test(h) || hasDigitAndLetter(h),
  },
  {
    kind: 'api-key',
    label: 'a SendGrid key',
    prefix: /SG\./g,
    body: 'b64url-dot',
    min: 60,
    check: (h) => /^[\w-]{22}\.[\w-]{43}/.test(h),
  },
  { kind: 'api-key', label: 'a Shopify token', prefix: /shp(?:at|ca|pa|ss)_/g, body: 'hex', min: 32 },
  { kind: 'cloud-token', label: 'a DigitalOcean token', prefix: /do[opr]_v1_/g, body: 'hex', min: 64 },
  { kind: 'cloud-token', label: 'a Vault token', prefix: /hv[sb]\./g, body: 'b64url', min: 24 },
  {
    kind: 'cloud-token',
    label: 'a Doppler token',
    prefix: /dp\.(?:pt|st|ct|sa|scim|audit)\./g,
    body: 'alnum',
    min: 40,
  },
  { kind: 'api-key', label: 'a Linear API key', prefix: /lin_api_/g, body: 'alnum', min: 40 },
  { kind: 'api-key', label: 'a Grafana token', prefix: /gl(?:sa|c)_/g, body: 'b64url', min: 32 },
  {
    kind: 'api-key',
    label: 'a Databricks token',
    prefix: /dapi/g,
    body: 'hex',
    min: 32,
    check: (h) => /^[0-9a-f]{32}(?:-\d)?$/.test(h),
  },
  { kind: 'api-key', label: 'a Twilio key', prefix: /SK/g, body: 'hex', min: 32, check: (h) => h.length === 32 },
  { kind: 'api-key', label: 'a Mailgun key', prefix: /key-/g, body: 'hex', min: 32, check: (h) => h.length === 32 },
  { kind: 'api-key', label: 'a Square token', prefix: /sq0(?:atp|csp)-/g, body: 'b64url', min: 22 },
  {
    kind: 'jwt',
    label: 'a JSON Web Token',
    prefix: /eyJ/g,
    body: 'b64url-dot',
    min: 24,
    check: (h) => /^[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\./.test(h),
  },
  { kind: 'private-key', label: 'an age secret key', prefix: /AGE-SECRET-KEY-1/g, body: 'upper-alnum', min: 50 },
];

/** Every shape's prefix in one alternation: most text holds none, and one pass says so. */
const ANY_PREFIX = new RegExp(SHAPES.map((s) => s.prefix.source).join('|') + '|-----BEGIN|PuTTY-User-Key-File|://');

const PRIVATE_KEY_BLOCK = /-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----/g;
const PUTTY_KEY = /PuTTY-User-Key-File-\d:/g;

let work = 0;
/** Characters the scanners have visited since the last reset: a test proves linearity with it. */
export function scanWork(reset = false): number {
  const n = work;
  if (reset) work = 0;
  return n;
}

function inCharset(c: number, set: Charset): boolean {
  const digit = c >= 48 && c <= 57;
  const upper = c >= 65 && c <= 90;
  const lower = c >= 97 && c <= 122;
  switch (set) {
    case 'alnum':
      return digit || upper || lower;
    case 'upper-alnum':
      return digit || upper;
    case 'hex':
      return digit || (c >= 97 && c <= 102) || (c >= 65 && c <= 70);
    case 'b64url':
      return digit || upper || lower || c === 95 || c === 45;
    case 'b64url-dot':
      return digit || upper || lower || c === 95 || c === 45 || c === 46 || c === 47;
    case 'slack':
      return digit || upper || lower || c === 45;
  }
}

/** A word character: a token that starts right after one is part of a longer word, not a token of its own. */
function isWordChar(c: number): boolean {
  return (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122);
}

/** Shapes in `text`: prefix-identified tokens. */
function shapeSpans(text: string, out: SecretSpan[]): void {
  for (const shape of SHAPES) {
    const re = shape.prefix;
    re.lastIndex = 0;
    let measuredTo = 0;
    for (let m = re.exec(text); m !== null; m = re.exec(text)) {
      const start = m.index;
      const bodyStart = start + m[0].length;
      work += m[0].length;
      if (start < measuredTo) {
        // Inside a token already measured: its verdict stands; skip to its end so no character is visited twice.
        re.lastIndex = Math.max(re.lastIndex, measuredTo);
        continue;
      }
      if (start > 0 && isWordChar(text.charCodeAt(start - 1))) continue;
      let end = bodyStart;
      while (end < text.length && inCharset(text.charCodeAt(end), shape.body)) end++;
      work += end - bodyStart;
      measuredTo = end;
      re.lastIndex = Math.max(re.lastIndex, end);
      if (end - bodyStart < shape.min) continue;
      const head = text.slice(bodyStart, Math.min(end, bodyStart + HEAD));
      if (shape.check && !shape.check(head)) continue;
      out.push({ kind: shape.kind, label: shape.label, start, end });
    }
  }
  for (const re of [PRIVATE_KEY_BLOCK, PUTTY_KEY]) {
    re.lastIndex = 0;
    for (let m = re.exec(text); m !== null; m = re.exec(text)) {
      work += m[0].length;
      out.push({
        kind: 'private-key',
        label: 'a private key block',
        start: m.index,
        end: privateKeyEnd(text, m.index + m[0].length),
      });
    }
  }
  urlCredentialSpans(text, out);
}

/** A private key block runs to its END line; without one, to the end of the text. */
function privateKeyEnd(text: string, from: number): number {
  const end = text.indexOf('-----END', from);
  if (end < 0) return text.length;
  const close = text.indexOf('-----', end + 8);
  return close < 0 ? text.length : close + 5;
}

const SCHEME_CHAR = (c: number): boolean => isWordChar(c) || c === 43 || c === 45 || c === 46;
const AUTHORITY_END = (c: number): boolean =>
  c === 47 || c === 63 || c === 35 || c <= 32 || c === 34 || c === 39 || c === 96;
/** `${VAR}` / `$VAR` in the password position: a placeholder filled in at run time, not a value. */
const PLACEHOLDER = /^\$\{?[A-Za-z_][A-Za-z0-9_]*\}?$/;

/**
 * URL userinfo: `scheme://user:password@host`, `scheme://:password@host` (redis), and a token alone as the user
 * (`https://<token>@github.com`). A plain user name (`ssh://git@host`) is not a secret.
 */
function urlCredentialSpans(text: string, out: SecretSpan[]): void {
  let from = 0;
  for (let i = text.indexOf('://', from); i >= 0; i = text.indexOf('://', from)) {
    let s = i;
    while (s > 0 && i - s < 32 && SCHEME_CHAR(text.charCodeAt(s - 1))) s--;
    let end = i + 3;
    let at = -1;
    while (end < text.length && !AUTHORITY_END(text.charCodeAt(end))) {
      if (text.charCodeAt(end) === 64) at = end;
      end++;
    }
    work += end - i;
    from = Math.max(end, i + 3);
    if (s === i || at < 0) continue;
    const userinfo = text.slice(i + 3, at);
    const colon = userinfo.indexOf(':');
    const secret = colon >= 0 ? userinfo.slice(colon + 1) : userinfo;
    if (secret.length === 0 || PLACEHOLDER.test(secret)) continue;
    if (colon < 0 && !tokenLike(secret)) continue;
    out.push({ kind: 'url-credentials', label: 'a URL with an embedded password or token', start: i + 3, end: at });
  }
}

/** A user name that is really a token: long, and mixes letters with digits or symbols. */
function tokenLike(s: string): boolean {
  if (s.length < 16) return false;
  return hasDigitAndLetter(s) || shannonEntropy(s.slice(0, HEAD)) > 3.5;
}

// ---------------------------------------------------------------------------------------------------------
// Keyword assignments in free text and files: `password=…`, `api_key: …`, `Authorization: Bearer …`.

/** Bounded everywhere: the keyword is a fixed word, the gap a few characters, the value measured by a loop. */
const KEYWORD =
  /(?:passw(?:or)?d|passphrase|secret|token|api[_-]?key|apikey|access[_-]?key|auth[_-]?key|credentials?|client[_-]?secret|bearer|basic)/gi;
/** The keyword ends its identifier (`API_TOKEN=`, `db_password:`, `"secret": "`), then an assignment. */
const ASSIGN_GAP = /^[_.-]?[0-9]{0,2}["']?[ \t]{0,4}(?:[:=]|=>)[ \t]{0,4}["']?/;
/** `Authorization: Bearer <token>` / `Basic <base64>`: the scheme word, one space, the credential. */
const SCHEME_GAP = /^[ \t]{1,4}/;
const VALUE_CHAR = (c: number): boolean =>
  c > 32 && c !== 34 && c !== 39 && c !== 44 && c !== 59 && c !== 96 && c !== 125 && c !== 93;

function keywordSpans(text: string, out: SecretSpan[]): void {
  KEYWORD.lastIndex = 0;
  let measuredTo = 0;
  for (let m = KEYWORD.exec(text); m !== null; m = KEYWORD.exec(text)) {
    const after = m.index + m[0].length;
    work += m[0].length;
    if (m.index < measuredTo) continue;
    const scheme = /^(?:bearer|basic)$/i.test(m[0]);
    if (scheme && m.index > 0 && isWordChar(text.charCodeAt(m.index - 1))) continue;
    const gap = (scheme ? SCHEME_GAP : ASSIGN_GAP).exec(text.slice(after, after + 16));
    if (!gap) continue;
    const vStart = after + gap[0].length;
    let vEnd = vStart;
    while (vEnd < text.length && VALUE_CHAR(text.charCodeAt(vEnd))) vEnd++;
    work += vEnd - vStart;
    measuredTo = vEnd;
    KEYWORD.lastIndex = Math.max(KEYWORD.lastIndex, vEnd);
    const value = text.slice(vStart, Math.min(vEnd, vStart + HEAD));
    if (scheme ? value.length < 16 || !hasDigitAndLetter(value) : !assignedSecret(value)) continue;
    out.push({ kind: 'keyword-assignment', label: 'a password or token assigned in text', start: vStart, end: vEnd });
  }
}

/** A value after `password=` that is really a value: long enough, not a placeholder, a reference or a word. */
function assignedSecret(value: string): boolean {
  if (value.length < 6) return false;
  if (PLACEHOLDER.test(value) || value.startsWith('$') || value.startsWith('{{') || value.startsWith('<')) return false;
  if (parseSecretReference(value) !== undefined || /^(?:file|https?):/.test(value)) return false;
  if (/^[a-z]+(?:[-_][a-z]+)*$/.test(value)) return false; // a word or a phrase-like name: `token-limit`, `required`
  if (/^[A-Z_]+$/.test(value)) return false; // an env variable's name
  if (/^[0-9.]+$/.test(value)) return false; // a number or version
  return shannonEntropy(value) >= 2.5;
}

// ---------------------------------------------------------------------------------------------------------
// Entropy: long random runs. Per alphabet: hex runs have at most 4 bits per character, base64 up to 6.

const RUN_LENGTH = 32;
/** A shorter run is still a secret when the field's name says it holds one (`api-token`, `SESSION_KEY`). */
const KEYED_RUN_LENGTH = 16;
const B64_ENTROPY_BITS = 4.0;
const HEX_ENTROPY_BITS = 3.0;

const isB64Char = (c: number): boolean =>
  (c >= 48 && c <= 57) ||
  (c >= 65 && c <= 90) ||
  (c >= 97 && c <= 122) ||
  c === 43 ||
  c === 47 ||
  c === 61 ||
  c === 95 ||
  c === 45;

/**
 * A run made of words (a path like `/srv/Projects2024/agent-pool`), not of random characters: every `/` segment
 * splits on `_ = + -` into words, each lowercase, Capitalised, camelCase or ALLCAPS with digits only at the end.
 * Random tokens change case and mix digits mid-word; words do not.
 */
const WORD = /^(?:[A-Za-z]?[a-z]*(?:[A-Z][a-z]+)*|[A-Z]+)[0-9]*$/;
const WORD_SEPARATORS = /[_=+-]+/;

function isWordy(run: string): boolean {
  for (const part of run.split(WORD_SEPARATORS)) if (!WORD.test(part)) return false;
  return true;
}

const UUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;
const HEX = /^[0-9a-f]+$|^[0-9A-F]+$/;
/** Text right before a hex run that says it is a digest or an object id, not a key. */
const DIGEST_MARKER =
  /(?:sha(?:1|224|256|384|512)?|md5|blake2b?|digest|commit|rev|hash|checksum)[:=@ /-]?$|[@#]$|\/(?:commit|commits|tree|blob|pull|compare)\/$/i;

const B64_DIGEST_MARKER = /(?:sha(?:1|256|384|512)|md5):$/i;

/** The field names whose values are digests by design (sha256, integrity, commit …). */
export const DIGEST_FIELDS: ReadonlySet<string> = new Set([
  'sha256',
  'sha512',
  'integrity',
  'commit',
  'digest',
  'fingerprint',
  'checksum',
  'ref',
  'rev',
]);

/** Values that are clearly digests: a 40/64-hex object or content hash, or an SRI/`sha256:` digest. */
const DIGEST = /^(?:[0-9a-f]{40}|[0-9a-f]{64}|sha(?:256|384|512)-[A-Za-z0-9+/]{20,100}={0,2}|sha256:[0-9a-f]{64})$/;

/** Key names that announce a secret, in any casing and separator: `api-token`, `dbPassword`, `SESSION_SECRET`. */
const SECRET_KEY_NAME =
  /(?:token|secret|passw(?:or)?d|passphrase|api[-_]?key|apikey|private[-_]?key|access[-_]?key|auth[-_]?key|credential|session[-_]?key|signing[-_]?key)s?$/i;
/** …except names that are clearly about something else: `max-tokens`, `token-limit`, `secret-ref`. */
const NOT_SECRET_KEY_NAME =
  /(?:max|min|num|count|limit)[-_]?tokens?$|(?:file|path|dir|ref|refs|name|names|url|id|ids|count|limit|ttl|length)$/i;

export function isSecretKeyName(name: string): boolean {
  return SECRET_KEY_NAME.test(name) && !NOT_SECRET_KEY_NAME.test(name);
}

function entropySpans(text: string, opts: FindOptions, out: SecretSpan[]): void {
  const keyed = opts.field !== undefined && isSecretKeyName(opts.field);
  const digestField = opts.digestField === true || (opts.field !== undefined && DIGEST_FIELDS.has(opts.field));
  const minRun = keyed ? KEYED_RUN_LENGTH : RUN_LENGTH;
  let i = 0;
  while (i < text.length) {
    if (!isB64Char(text.charCodeAt(i))) {
      i++;
      continue;
    }
    let end = i;
    while (end < text.length && isB64Char(text.charCodeAt(end))) end++;
    work += end - i + 1;
    if (end - i >= minRun) {
      const found = randomRun(text, i, end, minRun, digestField);
      if (found) out.push({ ...found, start: i, end });
    }
    i = end;
  }
}

/**
 * Whether the run text[start, end) holds a random token. A run that starts with `/` is a path: each of its
 * segments is judged alone (a 16-character random directory name is not a key; a 32-character one may be).
 */
function randomRun(
  text: string,
  start: number,
  end: number,
  minRun: number,
  digestField: boolean,
): SecretFinding | undefined {
  const run = text.slice(start, end);
  const parts = isPathRun(run, text, start) ? run.split('/') : [run];
  let offset = start;
  for (const part of parts) {
    const found = part.length >= minRun ? randomPart(part, text, offset, digestField) : undefined;
    if (found) return found;
    offset += part.length + 1;
  }
  return undefined;
}

/**
 * A run is a path (judged segment by segment) when it starts with `/`, follows `file:`/`~`, or has a segment that
 * is a plain word (`com/example/agent`). Base64 keys hold `/` too, but their segments are random throughout.
 */
function isPathRun(run: string, text: string, start: number): boolean {
  if (!run.includes('/')) return false;
  if (
    run.startsWith('/') ||
    (start > 0 && (text[start - 1] === ':' || text[start - 1] === '~' || text[start - 1] === '.'))
  )
    return true;
  return run.split('/').some((seg) => seg.length >= 3 && /^[a-z]+(?:[-_.][a-z]+)*$/.test(seg));
}

function randomPart(part: string, text: string, offset: number, digestField: boolean): SecretFinding | undefined {
  if (digestField && DIGEST.test(part)) return undefined;
  if (UUID.test(part) || isUuidList(part)) return undefined;
  const sample = part.length > 4096 ? part.slice(0, 4096) : part;
  const bare = sample.replace(/^[=+/_-]+|[=+/_-]+$/g, '');
  if (HEX.test(bare)) {
    if (bare.length < RUN_LENGTH || digestField) return undefined;
    const before = text.slice(Math.max(0, offset - 12), offset);
    if (DIGEST_MARKER.test(before)) return undefined;
    return shannonEntropy(bare) > HEX_ENTROPY_BITS
      ? { kind: 'high-entropy-hex', label: 'a long random hex string (a key or token)' }
      : undefined;
  }
  if (!/[0-9]/.test(bare) || !/[A-Za-z]/.test(bare)) return undefined;
  // `SHA256:<base64>` (an SSH key fingerprint), `sha512:<base64>`: a digest written in base64.
  if (B64_DIGEST_MARKER.test(text.slice(Math.max(0, offset - 8), offset))) return undefined;
  const mixedCase = /[A-Z]/.test(bare) && /[a-z]/.test(bare);
  if (isWordy(bare)) return undefined;
  // Lower-case-and-digit runs (base36) are random only when they are long: names like `build-2024-agent-pool`
  // have words between the digits, and isWordy has ruled them out already.
  const bits = shannonEntropy(bare);
  if (mixedCase ? bits > B64_ENTROPY_BITS : bits > 4.2)
    return { kind: 'high-entropy', label: 'a long random string (a key or token)' };
  return undefined;
}

/** UUIDs joined by dashes or underscores are identifiers (request ids, tenant ids), not keys. */
function isUuidList(part: string): boolean {
  return /^(?:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}[_-]?)+$/.test(
    part.length <= 400 ? part : '',
  );
}

/** Bits per character of `s`. */
export function shannonEntropy(s: string): number {
  const counts = new Map<number, number>();
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    counts.set(c, (counts.get(c) ?? 0) + 1);
  }
  work += s.length;
  let bits = 0;
  for (const n of counts.values()) {
    const p = n / s.length;
    bits -= p * Math.log2(p);
  }
  return bits;
}

// ---------------------------------------------------------------------------------------------------------
// Public scanning API.

export interface FindOptions {
  /** The value sits in a digest field: a well-formed digest there is expected, not a secret. */
  digestField?: boolean;
  /** The name of the field or key the value sits under (`sha256`, `API_TOKEN`, `description`): context for entropy. */
  field?: string;
  /**
   * Only context-free shapes (prefix tokens, private keys, URL userinfo, keyword assignments): the output boundary
   * uses this on rendered text, where digests and signatures (high entropy by nature) are legitimate.
   */
  shapesOnly?: boolean;
}

/** Every secret-looking span of `text`, in order of start; linear in the length of `text`. */
export function findSecretSpans(text: string, opts: FindOptions = {}): SecretSpan[] {
  const out: SecretSpan[] = [];
  if (text.length < 8) return out;
  work += text.length;
  if (ANY_PREFIX.test(text)) shapeSpans(text, out);
  keywordSpans(text, out);
  if (!opts.shapesOnly && text.length >= KEYED_RUN_LENGTH) entropySpans(text, opts, out);
  out.sort((a, b) => a.start - b.start || b.end - a.end);
  return out;
}

/** What kind of secret `value` looks like, or undefined. */
export function findSecret(value: string, opts?: FindOptions): SecretFinding | undefined {
  if (value.length < 8) return undefined;
  if (opts?.digestField && DIGEST.test(value)) return undefined;
  const spans = findSecretSpans(value, opts);
  if (spans.length === 0) return undefined;
  // Report the most specific finding: a named shape before generic entropy.
  const named = spans.find((s) => s.kind !== 'high-entropy' && s.kind !== 'high-entropy-hex') ?? spans[0]!;
  return { kind: named.kind, label: named.label };
}

// ---------------------------------------------------------------------------------------------------------
// Secret references.

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
      return hash > 1 && path.startsWith('/') && ENV_VAR.test(body.slice(hash + 1))
        ? { scheme, hostPath: path }
        : undefined;
    }
    case 'vault': {
      const hash = body.lastIndexOf('#');
      return hash > 0 && VAULT_PATH.test(body.slice(0, hash)) && VAULT_FIELD.test(body.slice(hash + 1))
        ? { scheme }
        : undefined;
    }
  }
}

/** Env variable names that announce a secret: *_TOKEN, *_SECRET, *_PASSWORD, *_API_KEY and kin. */
const SECRET_ENV_NAME =
  /(?:^|_)(?:TOKEN|SECRET|PASSWORD|PASSWD|PASSPHRASE|API_KEY|APIKEY|PRIVATE_KEY|ACCESS_KEY|SECRET_KEY|AUTH)$/;

export function isSecretEnvName(name: string): boolean {
  return SECRET_ENV_NAME.test(name);
}

/** A value a secret-named env variable may hold: a reference, a path under $CREDENTIALS_DIRECTORY, or nothing. */
const CREDENTIALS_DIR_PATH = /^\$(?:CREDENTIALS_DIRECTORY|\{CREDENTIALS_DIRECTORY\})\/[A-Za-z0-9][A-Za-z0-9._-]*$/;

export function isSecretEnvReference(value: string): boolean {
  return value === '' || CREDENTIALS_DIR_PATH.test(value) || parseSecretReference(value) !== undefined;
}

const PRIVATE_KEY_LINE = /-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----|PuTTY-User-Key-File-\d:/;

/** 1-based line of the first private key block in a file's text, or undefined. */
export function privateKeyLine(text: string): number | undefined {
  const m = PRIVATE_KEY_LINE.exec(text);
  return m ? lineAt(text, m.index) : undefined;
}

/** 1-based line of offset `index` in `text`. */
export function lineAt(text: string, index: number): number {
  let line = 1;
  for (let i = text.indexOf('\n'); i >= 0 && i < index; i = text.indexOf('\n', i + 1)) line++;
  return line;
}
