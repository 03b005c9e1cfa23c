// The secret corpus (see secret-corpus.test.ts): real-shaped secrets and look-alikes generated from a seeded PRNG,
// each with the field it sits in. Shared by the corpus test and by comparisons with other scanners (ADR 0013).

import type { FindOptions } from './secret-detectors.js';

let seed = 0x5eed18;
function rand(): number {
  // mulberry32: deterministic, so a failure names the same value on every run.
  seed = (seed + 0x6d2b79f5) | 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const ALNUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
const UPPER_ALNUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ0234567';
const HEXCHARS = '0123456789abcdef';
const B64URL = `${ALNUM}-_`;
const B64 = `${ALNUM}+/`;
const LOWER_ALNUM = 'abcdefghijklmnopqrstuvwxyz0123456789';
const pick = (alphabet: string, n: number): string => {
  let s = '';
  for (let i = 0; i < n; i++) s += alphabet[Math.floor(rand() * alphabet.length)];
  return s;
};
/** Random, but with at least one digit and one letter (real tokens of these lengths virtually always have both). */
const mixed = (alphabet: string, n: number): string => {
  for (;;) {
    const s = pick(alphabet, n);
    if (/[0-9]/.test(s) && /[A-Za-z]/.test(s)) return s;
  }
};
const b64url = (s: string): string => Buffer.from(s).toString('base64url');

export interface Sample {
  family: string;
  value: string;
  opts: FindOptions;
}

const env = (name = 'AGENT_SETTING'): FindOptions => ({ field: name });
const FREE = { field: 'description' };

/** Families of real-shaped secrets: 8 samples each. */
const SECRET_FAMILIES: Record<string, () => Sample['value']> = {
  'AWS access key': () => `AKIA${pick(UPPER_ALNUM, 16)}`,
  'AWS STS key': () => `ASIA${pick(UPPER_ALNUM, 16)}`,
  'AWS secret key (base64, 40)': () => mixed(B64, 40),
  'GitHub classic token': () => `ghp_${mixed(ALNUM, 36)}`,
  'GitHub OAuth/server token': () => `gh${pick('ous', 1)}_${mixed(ALNUM, 36)}`,
  'GitHub fine-grained PAT': () => `github_pat_${mixed(ALNUM, 22)}_${mixed(ALNUM, 59)}`,
  'GitLab PAT': () => `glpat-${mixed(B64URL, 20)}`,
  'GitLab runner token': () => `glrt-${mixed(B64URL, 20)}`,
  'Slack bot token': () => `xoxb-${pick('0123456789', 11)}-${pick('0123456789', 12)}-${mixed(ALNUM, 24)}`,
  'Slack webhook': () =>
    `https://hooks.slack.com/services/T${pick(UPPER_ALNUM, 8)}/B${pick(UPPER_ALNUM, 10)}/${mixed(ALNUM, 24)}`,
  'OpenAI project key': () => `sk-proj-${mixed(B64URL, 48)}`,
  'Anthropic key': () => `sk-ant-api03-${mixed(B64URL, 93)}AA`,
  'Google API key': () => `AIza${mixed(B64URL, 35)}`,
  'Google OAuth token': () => `ya29.${mixed(B64URL, 60)}`,
  'Google OAuth client secret': () => `GOCSPX-${mixed(B64URL, 28)}`,
  'Stripe live key': () => `sk_live_${mixed(ALNUM, 24)}`,
  'Stripe restricted key': () => `rk_live_${mixed(ALNUM, 24)}`,
  'npm token': () => `npm_${mixed(ALNUM, 36)}`,
  'PyPI token': () => `pypi-AgEIcHlwaS5vcmc${mixed(B64URL, 60)}`,
  'Hugging Face token': () => `hf_${mixed(ALNUM, 34)}`,
  'SendGrid key': () => `SG.${mixed(B64URL, 22)}.${mixed(B64URL, 43)}`,
  'Shopify token': () => `shpat_${pick(HEXCHARS, 32)}`,
  'DigitalOcean token': () => `dop_v1_${pick(HEXCHARS, 64)}`,
  'Vault token': () => `hvs.${mixed(B64URL, 90)}`,
  'Docker Hub PAT': () => `dckr_pat_${mixed(B64URL, 27)}`,
  'Twilio API key': () => `SK${pick(HEXCHARS, 32)}`,
  'Mailgun key': () => `key-${pick(HEXCHARS, 32)}`,
  JWT: () =>
    `${b64url('{"alg":"HS256","typ":"JWT"}')}.${b64url(`{"sub":"${pick(LOWER_ALNUM, 8)}","iat":1700000000}`)}.${mixed(B64URL, 43)}`,
  'private key block': () =>
    `-----BEGIN ${pick('', 0)}${['RSA ', 'EC ', 'OPENSSH ', ''][Math.floor(rand() * 4)]}PRIVATE KEY-----\n${mixed(B64, 64)}\n-----END PRIVATE KEY-----`,
  'URL with password': () => `postgres://agent:${mixed(ALNUM, 14)}@db.internal:5432/agents`,
  'redis URL, password only': () => `redis://:${mixed(ALNUM, 12)}@cache.internal:6379/0`,
  'URL with a token as user': () => `https://${mixed(ALNUM, 24)}@git.example.com/agents/x.git`,
  '64-hex token in env': () => pick(HEXCHARS, 64),
  '40-hex token in env': () => pick(HEXCHARS, 40),
  '32-hex token in env': () => pick(HEXCHARS, 32),
  'base62 token in env': () => mixed(ALNUM, 32),
  'password= in text': () => `connect with password=${mixed(ALNUM, 12)} to the cache`,
  'Bearer header in text': () => `Authorization: Bearer ${mixed(B64URL, 32)}`,
  'age secret key': () => `AGE-SECRET-KEY-1${pick(UPPER_ALNUM, 58)}`,
};

/** Where each secret family is planted: env values unless the family is text. */
function secretContext(family: string): FindOptions {
  if (/in text|webhook|private key/.test(family)) return FREE;
  return env();
}

/** Families of look-alikes: identifiers, digests, paths and text that are NOT secrets, each in its own field. */
const LOOKALIKE_FAMILIES: Record<string, () => Omit<Sample, 'family'>> = {
  'git commit id in `commit`': () => ({ value: pick(HEXCHARS, 40), opts: { field: 'commit' } }),
  'sha256 pin in `sha256`': () => ({ value: pick(HEXCHARS, 64), opts: { field: 'sha256' } }),
  'sha256: digest in text': () => ({ value: `image digest sha256:${pick(HEXCHARS, 64)}`, opts: FREE }),
  'OCI reference @sha256': () => ({
    value: `ghcr.io/example/agent@sha256:${pick(HEXCHARS, 64)}`,
    opts: { field: 'image' },
  }),
  'SRI integrity in `integrity`': () => ({ value: `sha512-${mixed(B64, 86)}==`, opts: { field: 'integrity' } }),
  'commit URL': () => ({ value: `https://github.com/example/agent/commit/${pick(HEXCHARS, 40)}`, opts: FREE }),
  'UUID in env': () => ({
    value: `${pick(HEXCHARS, 8)}-${pick(HEXCHARS, 4)}-4${pick(HEXCHARS, 3)}-a${pick(HEXCHARS, 3)}-${pick(HEXCHARS, 12)}`,
    opts: env('TENANT_ID'),
  }),
  'UUID in text': () => ({
    value: `request ${pick(HEXCHARS, 8)}-${pick(HEXCHARS, 4)}-4${pick(HEXCHARS, 3)}-b${pick(HEXCHARS, 3)}-${pick(HEXCHARS, 12)} failed`,
    opts: FREE,
  }),
  'file: reference with a random directory': () => ({
    value: `file:/srv/agents/${mixed(ALNUM, 16)}/key`,
    opts: { field: 'ref' },
  }),
  'systemd-creds path with a random segment': () => ({
    value: `systemd-creds:/etc/credstore/${mixed(ALNUM, 12)}/chat-token.cred`,
    opts: { field: 'ref' },
  }),
  'mkdtemp path': () => ({ value: `/tmp/agentvm-run-${mixed(ALNUM, 6)}/release-source`, opts: env('AGENT_DATA') }),
  'random 16-char id': () => ({ value: mixed(ALNUM, 16), opts: env('AGENT_INSTANCE') }),
  'short hex id': () => ({ value: pick(HEXCHARS, 12), opts: env('BUILD_ID') }),
  'semver with build metadata': () => ({
    value: `1.${Math.floor(rand() * 40)}.${Math.floor(rand() * 9)}+build.${pick('0123456789', 4)}`,
    opts: { field: 'version' },
  }),
  'Go pseudo-version': () => ({
    value: `v0.0.0-2024${pick('0123456789', 10)}-${pick(HEXCHARS, 12)}`,
    opts: { field: 'version' },
  }),
  'URL without credentials': () => ({
    value: `https://api.example.com/v1/agents/${pick(LOWER_ALNUM, 6)}?page=${Math.floor(rand() * 9)}`,
    opts: env('AGENT_API'),
  }),
  'ssh git URL': () => ({
    value: `ssh://git@git.example.com/agents/${pick('abcdefghij', 6)}.git`,
    opts: { field: 'repo' },
  }),
  email: () => ({ value: `${pick('abcdefghij', 6)}-team@example.com`, opts: { field: 'owner' } }),
  'credentials directory path': () => ({
    value: `\${CREDENTIALS_DIRECTORY}/${pick('abcdefghij', 6)}-token`,
    opts: env('API_TOKEN'),
  }),
  'vault reference': () => ({ value: `vault:kv/agents/${pick('abcdefghij', 6)}#api-key`, opts: { field: 'ref' } }),
  'token limit in text': () => ({
    value: `max tokens=${Math.floor(rand() * 8000)} per request, token budget: ${Math.floor(rand() * 100)}k`,
    opts: FREE,
  }),
  'password placeholder': () => ({
    value: `password: \${DB_PASSWORD_${pick('ABCDEF', 3)}} from the vault`,
    opts: FREE,
  }),
  'prose about secrets': () => ({
    value: `Rotates the ${pick('abc', 1) === 'a' ? 'API key' : 'session token'} every ${Math.floor(rand() * 30)} days; the password is never logged.`,
    opts: FREE,
  }),
  'kebab-case name with digits': () => ({
    value: `agent-pool-${pick(LOWER_ALNUM, 5)}-${pick('0123456789', 4)}-worker-v2`,
    opts: { field: 'name' },
  }),
  'CamelCase identifier': () => ({
    value: `AgentPool${['Controller', 'Scheduler', 'Gateway'][Math.floor(rand() * 3)]}V${Math.floor(rand() * 9)}Handler`,
    opts: env('AGENT_CLASS'),
  }),
  'ISO timestamp': () => ({
    value: `2026-${String(1 + Math.floor(rand() * 12)).padStart(2, '0')}-1${Math.floor(rand() * 9)}T12:${pick('012345', 1)}0:00Z`,
    opts: env('AGENT_SINCE'),
  }),
  'container image tag': () => ({
    value: `ghcr.io/example/${pick('abcdefgh', 6)}:1.${Math.floor(rand() * 20)}.0-alpine3.20`,
    opts: { field: 'image' },
  }),
  'base64 of a short config': () => ({
    value: Buffer.from(`mode=${pick('abc', 3)}`).toString('base64'),
    opts: env('AGENT_MODE_B64'),
  }),
  'python module path': () => ({
    value: `agents.${pick('abcdefgh', 7)}.handlers.v${Math.floor(rand() * 9)}`,
    opts: { field: 'entrypoint' },
  }),
  'public key fingerprint (SHA256:) in text': () => ({ value: `host key SHA256:${mixed(B64, 43)}`, opts: FREE }),
};

export function buildSecretCorpus(): { secrets: Sample[]; lookalikes: Sample[] } {
  const secrets: Sample[] = [];
  for (const [family, make] of Object.entries(SECRET_FAMILIES))
    for (let i = 0; i < 8; i++) secrets.push({ family, value: make(), opts: secretContext(family) });
  const lookalikes: Sample[] = [];
  for (const [family, make] of Object.entries(LOOKALIKE_FAMILIES))
    for (let i = 0; i < 8; i++) lookalikes.push({ family, ...make() });
  return { secrets, lookalikes };
}
