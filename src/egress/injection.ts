// Injected credentials (decisions/0023), the proxy's side. A contract secret with `inject: {host, header, format?}`
// reaches its workload only as a placeholder; on an HTTPS request to exactly that host, over a connection the proxy
// terminated itself, the proxy replaces the placeholder with the real value in that one header. Invariants:
//   - Only the declared header of a request to the declared host is touched, and only when its whole value is the
//     placeholder (or `format` around it): a placeholder in another header, the path, the query or the body passes
//     unchanged, so a prompt-injected agent cannot make the proxy write the value anywhere it chooses.
//   - The real value is read from the credential store per request and never logged, audited or put in an error.
//   - Routes are per caller (the socket is the identity, proxy.ts): another profile's placeholder is never replaced.

import { readFileSync } from 'node:fs';
import { normaliseHost } from './rules.js';

/** One injected secret of one caller, as rules.json carries it (no value, no placeholder). */
export interface InjectionRoute {
  name: string;
  host: string;
  header: string;
  /** `{}` stands for the value; `{}` alone when the contract gives none. */
  format: string;
}

export const PLACEHOLDER_PREFIX = 'agentvm-placeholder-';

/** Routes of `routes` for a CONNECT to `host` (exact name, case- and trailing-dot-insensitive). */
export function routesFor(routes: readonly InjectionRoute[] | undefined, host: string): InjectionRoute[] {
  const h = normaliseHost(host);
  return (routes ?? []).filter((r) => normaliseHost(r.host) === h);
}

/**
 * The header value to send: `format` around the real value when `sent` is exactly the placeholder or exactly `format`
 * around it; otherwise undefined (send `sent` unchanged).
 */
export function injectedHeaderValue(
  sent: string,
  placeholder: string,
  format: string,
  value: string,
): string | undefined {
  const v = sent.trim();
  if (placeholder === '' || (v !== placeholder && v !== format.replace('{}', placeholder))) return undefined;
  return format.replace('{}', () => value);
}

export interface CredentialReader {
  /** The placeholder and the real value of `name` for `caller`, or undefined when apply has not delivered it. */
  read(caller: string, name: string): { placeholder: string; value: string } | undefined;
}

/** Reads the credential store of `paths` at request time (rotation needs no proxy restart). */
export function storeReader(paths: {
  credential(caller: string, name: string, kind: 'value' | 'placeholder'): string;
}): CredentialReader {
  return {
    read(caller, name) {
      try {
        const placeholder = readFileSync(paths.credential(caller, name, 'placeholder'), 'utf8').trim();
        const value = readFileSync(paths.credential(caller, name, 'value'), 'utf8').replace(/\r?\n$/, '');
        // A value that would break the header line is never sent (and never echoed: the caller sees only the name).
        if (/[\r\n\0]/.test(value)) return undefined;
        return { placeholder, value };
      } catch {
        return undefined;
      }
    },
  };
}

/**
 * The raw header list (name, value, name, value …) with the routes applied. Hop-by-hop headers and Host are dropped
 * (the proxy sets Host to the upstream itself).
 */
export function rewriteHeaders(
  raw: readonly string[],
  routes: readonly InjectionRoute[],
  creds: (name: string) => { placeholder: string; value: string } | undefined,
): string[] {
  const out: string[] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!;
    let value = raw[i + 1]!;
    const lower = name.toLowerCase();
    if (HOP.has(lower)) continue;
    for (const r of routes) {
      if (r.header.toLowerCase() !== lower) continue;
      const c = creds(r.name);
      const next = c ? injectedHeaderValue(value, c.placeholder, r.format, c.value) : undefined;
      if (next !== undefined) value = next;
    }
    out.push(name, value);
  }
  return out;
}

const HOP = new Set([
  'host',
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authorization',
  'te',
  'upgrade',
  'transfer-encoding',
  'trailer',
]);
