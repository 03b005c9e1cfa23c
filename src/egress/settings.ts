// The proxy's settings file (`rules.json`): data, not code. Apply writes it atomically and signals the proxy
// (SIGHUP, `systemctl reload`); the proxy re-reads it and answers in `status.json` with the digest it now serves, so
// apply knows the new rules are live before a unit that depends on them starts.

import { createHash } from 'node:crypto';
import { readJsonFile, writeFileAtomic } from '../state/atomic-file.js';
import { canonicalJson } from '../model/canonical-json.js';
import type { ProxySettings } from './proxy.js';

export interface RulesFile extends ProxySettings {
  version: 1;
  host: string;
}

export interface StatusFile {
  version: 1;
  pid: number;
  digest: string;
  callers: number;
  time: string;
  /** Profile ports the proxy could not bridge inbound (taken by another process). */
  inboundFailures?: Array<{ port: number; error: string }>;
}

export function rulesDigest(rules: RulesFile): string {
  return `sha256:${createHash('sha256').update(canonicalJson(rules)).digest('hex')}`;
}

function isRules(v: unknown): v is RulesFile {
  const r = v as Partial<RulesFile> | undefined;
  return (
    !!r &&
    r.version === 1 &&
    typeof r.host === 'string' &&
    Array.isArray(r.resolvers) &&
    Array.isArray(r.callers) &&
    r.callers.every(
      (c) =>
        typeof c.id === 'string' &&
        typeof c.workload === 'string' &&
        typeof c.socket === 'string' &&
        Array.isArray(c.entries) &&
        c.entries.every((e) => typeof e.host === 'string' && typeof e.port === 'number'),
    )
  );
}

/** The rules file, undefined when absent; throws when it is not one. */
export function readRulesFile(file: string): RulesFile | undefined {
  const v = readJsonFile(file);
  if (v === undefined) return undefined;
  if (!isRules(v)) throw new Error(`${file} is not an egress rules file (version 1)`);
  return v;
}

export function writeRulesFile(file: string, rules: RulesFile): void {
  writeFileAtomic(file, `${JSON.stringify(rules, null, 2)}\n`, { mode: 0o644 });
}

export function readStatusFile(file: string): StatusFile | undefined {
  try {
    const v = readJsonFile(file) as Partial<StatusFile> | undefined;
    return v && v.version === 1 && typeof v.pid === 'number' && typeof v.digest === 'string'
      ? (v as StatusFile)
      : undefined;
  } catch {
    return undefined;
  }
}

export function writeStatusFile(file: string, status: StatusFile): void {
  writeFileAtomic(file, `${JSON.stringify(status)}\n`, { mode: 0o644 });
}
