import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { X509Certificate } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { ensureCa, ensureLeaf } from './ca.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'agentvm-ca-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('the agentvm CA (openssl)', () => {
  it('GIVEN a host THEN the CA key is 0600, the CA is a CA, the leaf names exactly the host and chains to it; a second run keeps them', () => {
    const ca = ensureCa(path.join(dir, 'ca'), 'gw');
    expect(statSync(ca.key).mode & 0o777).toBe(0o600);
    const caCert = new X509Certificate(readFileSync(ca.cert));
    expect(caCert.ca).toBe(true);
    const leaf = { cert: path.join(dir, 'tls/api.example.com.pem'), key: path.join(dir, 'tls/api.example.com.key') };
    ensureLeaf(ca, leaf, 'api.example.com');
    const cert = new X509Certificate(readFileSync(leaf.cert));
    expect(cert.subjectAltName).toBe('DNS:api.example.com');
    expect(cert.ca).toBe(false);
    expect(cert.checkIssued(caCert) && cert.verify(caCert.publicKey)).toBe(true);
    expect(statSync(leaf.key).mode & 0o777).toBe(0o600);
    expect(readFileSync(ca.bundle, 'utf8').endsWith(readFileSync(ca.cert, 'utf8'))).toBe(true);
    const before = readFileSync(ca.cert, 'utf8');
    ensureCa(path.join(dir, 'ca'), 'gw');
    expect(readFileSync(ca.cert, 'utf8')).toBe(before);
    expect(execFileSync('openssl', ['verify', '-CAfile', ca.cert, leaf.cert]).toString()).toContain('OK');
  });

  it('GIVEN a name that is not a host name THEN no certificate is made', () => {
    const ca = ensureCa(path.join(dir, 'ca'), 'gw');
    expect(() =>
      ensureLeaf(ca, { cert: path.join(dir, 'x.pem'), key: path.join(dir, 'x.key') }, '-subj /CN=evil'),
    ).toThrow(/not a host name/);
  });
});
