// agentvm's credential store (decisions/0023): <root>/var/lib/agentvm/credstore/<unit address>/, 0700, owned by the
// account the egress proxy and the manager run as (root in system scope). Apply writes, per secret that needs it:
//   <name>.value        the real value, read now from its reference: env-file:/abs/path#VAR (the unit loads it like
//                       file:), or file:/abs/path of an injected secret (the proxy reads it per request)
//   <name>.placeholder  for an injected secret: what the unit loads instead — `agentvm-placeholder-` + 32 random bytes,
//                       made once and kept while the secret stays declared (stable across applies and releases, so
//                       changing a release never restarts a unit for its credentials; it is worthless elsewhere)
// Invariants: no value is returned, logged or put in a diagnostic (only names, paths and error codes); files are
// written with mode 0600 to a temporary name and renamed; entries of secrets no longer declared are removed.

import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { errorDiag, type Diagnostic } from '../../diagnostics/index.js';
import { PLACEHOLDER_PREFIX } from '../../egress/injection.js';
import { rememberSecret } from '../../secrets/redaction.js';
import { SystemdCode } from './codes.js';
import type { GatewayConfig } from './gateway-unit.js';

type Owner = { uid: number; gid: number } | undefined;

/** The value of VAR in an env file (`VAR=value`, `export VAR=value`, single or double quotes), or undefined. */
export function envFileValue(text: string, name: string): string | undefined {
  let found: string | undefined;
  for (const raw of text.split(/\r?\n/)) {
    const m = /^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$/.exec(raw);
    if (!m || m[1] !== name) continue;
    let v = m[2]!.trim();
    if (
      (v.startsWith('"') && v.endsWith('"') && v.length >= 2) ||
      (v.startsWith("'") && v.endsWith("'") && v.length >= 2)
    )
      v = v.slice(1, -1);
    else v = v.replace(/\s+#.*$/, '');
    found = v; // the last assignment wins, as in a shell
  }
  return found;
}

function readValue(ref: string): { value: string } | { why: string } {
  const colon = ref.indexOf(':');
  const scheme = ref.slice(0, colon);
  const body = ref.slice(colon + 1);
  const file = scheme === 'env-file' ? body.slice(0, body.lastIndexOf('#')) : body;
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    return { why: `cannot read ${file} (${(error as NodeJS.ErrnoException).code ?? 'error'})` };
  }
  if (scheme === 'file') return { value: text.replace(/\r?\n$/, '') };
  const name = body.slice(body.lastIndexOf('#') + 1);
  const v = envFileValue(text, name);
  return v === undefined ? { why: `${file} does not set ${name}` } : { value: v };
}

function writePrivate(file: string, text: string, owner: Owner): void {
  const tmp = `${file}.tmp-${process.pid}`;
  writeFileSync(tmp, text, { mode: 0o600 });
  chmodSync(tmp, 0o600);
  if (owner) chownSync(tmp, owner.uid, owner.gid);
  renameSync(tmp, file);
}

function privateDir(dir: string, owner: Owner): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  if (owner) chownSync(dir, owner.uid, owner.gid);
}

/** Writes this unit's store entries; diagnostics name the secret and the file, never a value. */
export function deliverStoredCredentials(
  store: string,
  address: string,
  secrets: GatewayConfig['secrets'],
  owner: Owner,
): Diagnostic[] {
  const wanted = secrets.filter((s) => s.inject || s.ref.startsWith('env-file:'));
  const dir = path.join(store, address);
  const diagnostics: Diagnostic[] = [];
  if (wanted.length === 0) {
    rmSync(dir, { recursive: true, force: true });
    return diagnostics;
  }
  privateDir(store, owner);
  privateDir(dir, owner);
  const keep = new Set<string>();
  for (const s of wanted) {
    const read = readValue(s.ref);
    if ('why' in read) {
      diagnostics.push(
        errorDiag(SystemdCode.secretUnreadable, `${address}: secret \`${s.name}\`: ${read.why}.`, {
          address,
          detail:
            "apply reads env-file: and injected secrets into agentvm's credential store before the unit starts. Create the file (readable by root) or fix the reference in the contract.",
        }),
      );
      continue;
    }
    if (s.inject && /[\r\n\0]/.test(read.value)) {
      diagnostics.push(
        errorDiag(
          SystemdCode.secretUnreadable,
          `${address}: secret \`${s.name}\` spans several lines and cannot be sent in a header.`,
          { address },
        ),
      );
      continue;
    }
    // The one redaction boundary masks it in anything this process prints from now on (defence in depth: no path
    // here puts a value into output).
    rememberSecret(read.value);
    writePrivate(path.join(dir, `${s.name}.value`), read.value, owner);
    keep.add(`${s.name}.value`);
    if (s.inject) {
      const placeholder = path.join(dir, `${s.name}.placeholder`);
      if (!existsSync(placeholder))
        writePrivate(placeholder, `${PLACEHOLDER_PREFIX}${randomBytes(32).toString('hex')}`, owner);
      keep.add(`${s.name}.placeholder`);
    }
  }
  for (const f of readdirSync(dir)) if (!keep.has(f)) rmSync(path.join(dir, f), { force: true });
  return diagnostics;
}

/**
 * The stored secrets whose source now holds another value than the store (rotated in its env file or file): plan
 * re-applies the unit for them. Compared in memory only; the answer is names, never a value.
 */
export function staleStoredCredentials(store: string, address: string, secrets: GatewayConfig['secrets']): string[] {
  const stale: string[] = [];
  for (const s of secrets.filter((x) => x.inject || x.ref.startsWith('env-file:'))) {
    const read = readValue(s.ref);
    if ('why' in read) continue; // reported by apply, which cannot deliver it either
    let stored: string | undefined;
    try {
      stored = readFileSync(path.join(store, address, `${s.name}.value`), 'utf8');
    } catch {
      stored = undefined;
    }
    if (stored !== undefined && stored !== read.value) stale.push(s.name);
  }
  return stale;
}

/** Removes a unit's store entries (the unit is gone). */
export function forgetStoredCredentials(store: string, address: string): void {
  rmSync(path.join(store, address), { recursive: true, force: true });
}
