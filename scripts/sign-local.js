#!/usr/bin/env node
// sign-local: local (non-Sigstore-instance) signing for agentvm artifacts. Makes an ECDSA P-256 key pair and
// signs an artifact file into a Sigstore bundle v0.3 with a message signature, as `@sigstore/bundle` builds it:
// no certificate, no transparency-log entry, no timestamp, and `publicKey.hint` = base64(sha256(DER SPKI)).
// Such a bundle verifies only with a key policy (`signature.key`) and zero tlog/ctlog/timestamp thresholds.
//
//   node scripts/sign-local.js keygen <dir>                          writes <dir>/signing.key.pem (private, 0600) and <dir>/signing.pub.pem
//   node scripts/sign-local.js sign --key <priv.pem> <artifact> > bundle.json
//
// Exit codes: 0 ok, 1 error, 2 usage.

import { createHash, createPrivateKey, createPublicKey, createSign, generateKeyPairSync } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { bundleToJSON, toMessageSignatureBundle } from '@sigstore/bundle';

const USAGE = `usage:
  node scripts/sign-local.js keygen <dir>
  node scripts/sign-local.js sign --key <priv.pem> <artifact> > bundle.json`;

class UsageError extends Error {}

async function keygen(args) {
  if (args.length !== 1) throw new UsageError('keygen takes exactly one directory');
  const dir = args[0];
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  await mkdir(dir, { recursive: true });
  const priv = join(dir, 'signing.key.pem');
  const pub = join(dir, 'signing.pub.pem');
  // 'wx': never overwrite a key; losing a private key silently is worse than an error.
  await writeFile(priv, privateKey.export({ type: 'pkcs8', format: 'pem' }), { flag: 'wx', mode: 0o600 });
  await writeFile(pub, publicKey.export({ type: 'spki', format: 'pem' }), { flag: 'wx', mode: 0o644 });
  process.stdout.write(`${priv}\n${pub}\n`);
  process.stderr.write(
    `key hint: ${keyHint(publicKey)}\nkeep ${priv} secret; put ${pub} in the workload (signature.key)\n`,
  );
}

async function sign(args) {
  let keyPath;
  const rest = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--key') keyPath = args[++i];
    else if (args[i]?.startsWith('--key=')) keyPath = args[i].slice('--key='.length);
    else rest.push(args[i]);
  }
  if (!keyPath || rest.length !== 1) throw new UsageError('sign needs --key <priv.pem> and exactly one artifact');
  const pem = await readFile(keyPath);
  let privateKey;
  try {
    privateKey = createPrivateKey(pem);
  } catch (err) {
    throw new Error(`${keyPath} is not a PEM private key (${err.message})`);
  }
  if (privateKey.asymmetricKeyType !== 'ec' || privateKey.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    throw new Error(`${keyPath} is not an ECDSA P-256 private key`);
  }
  // One pass over the artifact feeds both the digest and the signature, so large images are never held in memory.
  const hash = createHash('sha256');
  const signer = createSign('sha256');
  for await (const chunk of createReadStream(rest[0])) {
    hash.update(chunk);
    signer.update(chunk);
  }
  const bundle = toMessageSignatureBundle({
    digest: hash.digest(),
    signature: signer.sign(privateKey),
    keyHint: keyHint(createPublicKey(privateKey)),
  });
  process.stdout.write(`${JSON.stringify(bundleToJSON(bundle), null, 2)}\n`);
}

function keyHint(publicKey) {
  return createHash('sha256')
    .update(publicKey.export({ type: 'spki', format: 'der' }))
    .digest('base64');
}

const [command, ...args] = process.argv.slice(2);
try {
  if (command === 'keygen') await keygen(args);
  else if (command === 'sign') await sign(args);
  else throw new UsageError(command ? `unknown command "${command}"` : 'no command');
} catch (err) {
  if (err instanceof UsageError) {
    process.stderr.write(`sign-local: ${err.message}\n${USAGE}\n`);
    process.exitCode = 2;
  } else {
    process.stderr.write(`sign-local: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  }
}
