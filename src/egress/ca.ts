// The host's agentvm CA for injected credentials (decisions/0023), made by apply (root) with the system's `openssl`:
//   ca.key      EC P-256, 0600 root: only apply reads it, to issue leaves; neither the proxy nor any unit can
//   ca.pem      the CA certificate, 0644: confined units trust it through NODE_EXTRA_CA_CERTS
//   bundle.pem  the system trust store + ca.pem, 0644: SSL_CERT_FILE / REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE replace a
//               client's store, so they must still verify the hosts the proxy only tunnels
//   <credstore>/.tls/<host>.{pem,key}  one leaf per injected host (SAN = that name only), owned by the proxy's account
// openssl rather than a new dependency: node:crypto makes keys but not certificates, and every host that runs agentvm
// has openssl. Existing files are kept (a CA that changed would invalidate every running unit's trust).

import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';

/** Where Debian (and most distributions) keep the system trust store as one PEM file. */
export const SYSTEM_BUNDLE = '/etc/ssl/certs/ca-certificates.crt';

export interface CaFiles {
  key: string;
  cert: string;
  bundle: string;
}

export function caFiles(caDir: string): CaFiles {
  return { key: path.join(caDir, 'ca.key'), cert: path.join(caDir, 'ca.pem'), bundle: path.join(caDir, 'bundle.pem') };
}

function openssl(args: string[]): void {
  execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** Creates the CA once (and refreshes the bundle); returns its files. Throws with openssl's message on failure. */
export function ensureCa(caDir: string, host: string): CaFiles {
  const f = caFiles(caDir);
  mkdirSync(caDir, { recursive: true, mode: 0o755 });
  chmodSync(caDir, 0o755);
  if (!existsSync(f.key) || !existsSync(f.cert)) {
    const tmpKey = `${f.key}.tmp`;
    rmSync(tmpKey, { force: true });
    writeFileSync(tmpKey, '', { mode: 0o600 });
    const name = host.replace(/[^A-Za-z0-9.-]/g, '-').slice(0, 40);
    openssl([
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-days',
      '3650',
      '-subj',
      `/CN=agentvm egress CA ${name}`,
      '-addext',
      'basicConstraints=critical,CA:TRUE,pathlen:0',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
      '-keyout',
      tmpKey,
      '-out',
      `${f.cert}.tmp`,
    ]);
    chmodSync(tmpKey, 0o600);
    renameSync(tmpKey, f.key);
    renameSync(`${f.cert}.tmp`, f.cert);
  }
  chmodSync(f.key, 0o600);
  chmodSync(f.cert, 0o644);
  const system = existsSync(SYSTEM_BUNDLE) ? readFileSync(SYSTEM_BUNDLE, 'utf8') : '';
  const bundle = `${system}${system && !system.endsWith('\n') ? '\n' : ''}${readFileSync(f.cert, 'utf8')}`;
  if (!existsSync(f.bundle) || readFileSync(f.bundle, 'utf8') !== bundle) {
    writeFileSync(`${f.bundle}.tmp`, bundle, { mode: 0o644 });
    renameSync(`${f.bundle}.tmp`, f.bundle);
  }
  return f;
}

/** Issues the leaf for `host` (once), readable by `owner` only. `host` is a validated DNS name (contract schema). */
export function ensureLeaf(
  ca: CaFiles,
  leaf: { cert: string; key: string },
  host: string,
  owner?: { uid: number; gid: number },
): void {
  if (!/^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$/.test(host))
    throw new Error(`${JSON.stringify(host)} is not a host name`);
  const dir = path.dirname(leaf.cert);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (!existsSync(leaf.cert) || !existsSync(leaf.key)) {
    writeFileSync(`${leaf.key}.tmp`, '', { mode: 0o600 });
    openssl([
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-days',
      '825',
      '-subj',
      `/CN=${host}`,
      '-CA',
      ca.cert,
      '-CAkey',
      ca.key,
      '-addext',
      `subjectAltName=DNS:${host}`,
      '-addext',
      'basicConstraints=critical,CA:FALSE',
      '-addext',
      'extendedKeyUsage=serverAuth',
      '-addext',
      'keyUsage=critical,digitalSignature',
      '-keyout',
      `${leaf.key}.tmp`,
      '-out',
      `${leaf.cert}.tmp`,
    ]);
    renameSync(`${leaf.key}.tmp`, leaf.key);
    renameSync(`${leaf.cert}.tmp`, leaf.cert);
  }
  chmodSync(dir, 0o700);
  chmodSync(leaf.key, 0o600);
  if (owner) for (const p of [dir, leaf.key, leaf.cert]) chownSync(p, owner.uid, owner.gid);
}
