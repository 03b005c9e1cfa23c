// Where and how the gate listens: the loopback rule (no TLS → loopback only), TLS material by reference, and the
// listener record (`<gate dir>/listener.json`) the running server writes so that `gate grant` prints a working link.
// Invariant: the certificate and key are read by reference at start-up and held in memory only; the listener record
// holds no key material, only address, port and whether TLS is on.

import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import path from 'node:path';
import { AgentvmError, userError } from '../diagnostics/index.js';
import { readJsonFile, writeFileAtomic } from '../state/atomic-file.js';
import { GateCode } from './codes.js';

export const DEFAULT_GATE_ADDRESS = '127.0.0.1';
export const DEFAULT_GATE_PORT = 8443;

export interface ListenerRecord {
  version: 1;
  address: string;
  port: number;
  tls: boolean;
  /** The origin people reach the gate at, behind a TLS-terminating proxy (grant links use it). */
  publicUrl?: string;
  /** How previews are named (absent in records of gates before ADR 0014: path). */
  routing?: 'host' | 'path';
  /** The gate domain under host routing. */
  domain?: string;
  pid: number;
  started: string;
}

export function isLoopback(address: string): boolean {
  if (address === 'localhost' || address === '::1') return true;
  if (isIP(address) === 4) return address.startsWith('127.');
  return /^::ffff:127\./i.test(address);
}

/** Refuses a non-loopback listener without TLS (the rule: without a certificate, loopback only). */
export function assertListenable(address: string, tls: boolean): void {
  if (!tls && !isLoopback(address)) {
    throw userError(
      GateCode.exposed,
      `The gate would listen on ${address} without TLS.`,
      'Without a certificate the gate listens on loopback only (127.0.0.1 or ::1). Give --tls-cert and --tls-key (host spec `spec.gate.tls`, by reference `file:/abs/path`), or listen on 127.0.0.1 behind a TLS proxy.',
    );
  }
}

/**
 * Reads a certificate or key by reference: `file:/abs/path`, or `systemd-creds:<name>` (the credential systemd
 * passed the unit with LoadCredential=, under $CREDENTIALS_DIRECTORY).
 */
export function readTlsReference(ref: string, what: 'certificate' | 'key'): Buffer {
  let file: string;
  if (ref.startsWith('file:')) {
    file = ref.slice('file:'.length);
    if (!path.isAbsolute(file))
      throw userError(
        GateCode.tlsReference,
        `The TLS ${what} reference ${ref} is not an absolute path.`,
        'Write it as file:/abs/path.',
      );
  } else if (ref.startsWith('systemd-creds:')) {
    const name = ref.slice('systemd-creds:'.length);
    const dir = process.env.CREDENTIALS_DIRECTORY;
    if (!dir || !/^[A-Za-z0-9._-]+$/.test(name)) {
      throw userError(
        GateCode.tlsReference,
        `The TLS ${what} reference ${ref} cannot be resolved here.`,
        'systemd-creds: references are read from $CREDENTIALS_DIRECTORY, which systemd sets for a unit with LoadCredential=. Outside such a unit use file:/abs/path.',
      );
    }
    file = path.join(dir, name);
  } else {
    throw userError(
      GateCode.tlsReference,
      `The TLS ${what} reference "${ref}" has an unknown scheme.`,
      'Give it as file:/abs/path or systemd-creds:<name>; never paste the PEM itself.',
    );
  }
  try {
    return readFileSync(file);
  } catch (error) {
    throw new AgentvmError(
      GateCode.tlsReference,
      `Cannot read the TLS ${what} at ${file} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message}).`,
      {
        detail: 'Check the path and that the account running the gate may read it.',
        cause: error,
      },
    );
  }
}

export function writeListenerRecord(file: string, record: ListenerRecord): void {
  writeFileAtomic(file, `${JSON.stringify(record, null, 2)}\n`, { mode: 0o644 });
}

/** The record of the server that last started, or undefined when none did (or the file is not one). */
export function readListenerRecord(file: string): ListenerRecord | undefined {
  try {
    const v = readJsonFile(file) as Partial<ListenerRecord> | undefined;
    if (
      v &&
      v.version === 1 &&
      typeof v.address === 'string' &&
      typeof v.port === 'number' &&
      typeof v.tls === 'boolean' &&
      (v.publicUrl === undefined || publicOrigin(v.publicUrl) !== undefined) &&
      (v.routing === undefined || v.routing === 'host' || v.routing === 'path') &&
      (v.domain === undefined || isGateDomain(v.domain))
    )
      return v as ListenerRecord;
  } catch {
    // unreadable: as if absent
  }
  return undefined;
}

/**
 * The origin of a public URL (`https://previews.example.com`, lowercase, no trailing slash), or undefined when it is
 * not an http(s) origin: no path, query, fragment or credentials — previews are hosts under its domain (or `/p/…` under it, path routing).
 */
export function publicOrigin(text: string): string | undefined {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return undefined;
  }
  if (
    (url.protocol !== 'https:' && url.protocol !== 'http:') ||
    url.username ||
    url.password ||
    url.search ||
    url.hash ||
    (url.pathname !== '/' && url.pathname !== '')
  )
    return undefined;
  if (!/^https?:\/\/[^/?#]+\/?$/i.test(text)) return undefined;
  return url.origin;
}

/** publicOrigin, or a user error saying what a public URL must look like (`where` names the flag or field). */
export function assertPublicUrl(text: string, where: string): string {
  const origin = publicOrigin(text);
  // Credentials in a URL are never echoed back (they may be real ones).
  const shown = text.replace(/\/\/[^/@]*@/, '//***@');
  if (!origin)
    throw userError(
      GateCode.invalidConfig,
      `${where} ${JSON.stringify(shown)} is not an http(s) origin.`,
      'Give the scheme and host people use to reach the gate through your TLS proxy, without a path: e.g. https://previews.example.com',
    );
  return origin;
}

/** A gate domain: DNS labels joined by dots (`localhost`, `previews.example.com`), lowercase, no trailing dot. */
export function isGateDomain(text: string): boolean {
  return (
    text.length <= 200 && /^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?$/.test(text)
  );
}

/** `http(s)://address:port`, with IPv6 addresses bracketed. */
export function baseUrl(address: string, port: number, tls: boolean): string {
  const host = isIP(address) === 6 ? `[${address}]` : address;
  return `${tls ? 'https' : 'http'}://${host}:${port}`;
}
