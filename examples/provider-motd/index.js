// agentvm-provider-motd: an example of a third-party provider that adds a resource kind of its own (not a
// replacement). A workload's manifest asks for a message of the day under `spec.extensions.motd`:
//
//   spec:
//     extensions:
//       motd:
//         text: "research-orchestrator: ask #research before restarting"
//
// and this provider keeps `<root>/etc/motd.d/agentvm-<workload>` holding exactly that text: `motd.<workload>` is
// planned, applied, shown as drift when someone edits the file, and removed when the block goes. The types come from
// the agentvm package (`agentvm/provider`), so this file is checked against the same contract the built-ins obey.
// Name it in agentvm.yaml:
//
//   spec:
//     providers:
//       - package: agentvm-provider-motd
//         version: 1.0.0

import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';

/** @typedef {import('agentvm/provider').Provider} Provider */
/** @typedef {import('agentvm/provider').DesiredResource} DesiredResource */
/** @typedef {import('agentvm/provider').Diagnostic} Diagnostic */
/** @typedef {import('agentvm/provider').PlanResponse} PlanResponse */

const TYPE = 'motd';
const PREFIX = 'motd.';
const MAX_TEXT = 4096;

/** @param {string} text */
const digestOf = (text) => `sha256:${createHash('sha256').update(text).digest('hex')}`;
/** @param {string} root */
const motdDir = (root) => path.join(root, 'etc/motd.d');
/** @param {string} root @param {string} workload */
const fileOf = (root, workload) => path.join(motdDir(root), `agentvm-${workload}`);
/** @param {string} address */
const workloadOf = (address) => address.slice(PREFIX.length);

/**
 * @param {unknown} config
 * @returns {string | undefined} the text, when the block is well-formed
 */
function textOf(config) {
  const text = /** @type {{ text?: unknown }} */ (config ?? {}).text;
  return typeof text === 'string' && text.length <= MAX_TEXT ? text : undefined;
}

/** @type {Provider} */
const provider = {
  type: TYPE,
  addressPrefix: PREFIX,

  expand({ workloads }) {
    /** @type {DesiredResource[]} */
    const resources = [];
    for (const w of workloads) {
      const block = /** @type {{ text?: unknown } | undefined} */ (w.manifest.spec.extensions?.[TYPE]);
      if (!block) continue;
      resources.push({ address: `${PREFIX}${w.name}`, provider: TYPE, workload: w.name, identity: digestOf(String(block.text ?? '')), config: { text: block.text }, dependsOn: [] });
    }
    return { resources, diagnostics: [] };
  },

  validate({ resource }) {
    if (textOf(resource.config) !== undefined) return { diagnostics: [] };
    return {
      diagnostics: [{ code: 'motd.invalid-text', severity: 'error', summary: `${resource.address}: spec.extensions.motd.text must be a string of at most ${MAX_TEXT} characters.`, address: resource.address }],
    };
  },

  async read({ host, address }) {
    try {
      const text = await readFile(fileOf(host.root, workloadOf(address)), 'utf8');
      return { live: { address, provider: TYPE, exists: true, identity: digestOf(text), digest: digestOf(text) }, diagnostics: [] };
    } catch (err) {
      if (/** @type {NodeJS.ErrnoException} */ (err).code !== 'ENOENT') throw err;
      return { live: { address, provider: TYPE, exists: false }, diagnostics: [] };
    }
  },

  plan({ desired, live, locked }) {
    /** @type {PlanResponse['drift']} */
    const drift = [];
    if (locked && !live.exists) drift.push({ code: 'live-missing', message: 'The message file was removed outside agentvm.' });
    if (locked && live.exists && live.digest !== locked.digest) drift.push({ code: 'live-modified', message: 'The message file was edited outside agentvm.' });
    if (!desired) {
      return { action: live.exists || locked ? 'delete' : 'noop', effect: 'none', reasons: [{ code: 'removed', message: 'No longer in the manifest.' }], drift, diagnostics: [] };
    }
    const want = digestOf(textOf(desired.config) ?? '');
    if (!live.exists) return { action: 'create', effect: 'none', reasons: [{ code: locked ? 'live-missing' : 'new', message: 'Write the message of the day.' }], drift, diagnostics: [] };
    if (live.digest !== want) {
      const code = locked && locked.digest === want ? 'live-modified' : 'config-changed';
      return { action: 'update', effect: 'none', reasons: [{ code, message: 'Rewrite the message of the day.' }], drift, diagnostics: [] };
    }
    return { action: 'noop', effect: 'none', reasons: [], drift, diagnostics: [] };
  },

  async apply({ host, change }) {
    const file = fileOf(host.root, workloadOf(change.address));
    if (change.action === 'delete') {
      await rm(file, { force: true });
      return { diagnostics: [] };
    }
    const text = textOf(change.desired?.config);
    if (text === undefined) return { diagnostics: [{ code: 'motd.invalid-text', severity: 'error', summary: `${change.address} has no text to write.`, address: change.address }] };
    await mkdir(path.dirname(file), { recursive: true });
    const temp = `${file}.${process.pid}.tmp`;
    await writeFile(temp, text);
    await rename(temp, file);
    const digest = digestOf(text);
    return { locked: { address: change.address, provider: TYPE, workload: change.workload, identity: digest, digest }, diagnostics: [] };
  },

  async list({ host }) {
    /** @type {string[]} */
    let names = [];
    try {
      names = await readdir(motdDir(host.root));
    } catch (err) {
      if (/** @type {NodeJS.ErrnoException} */ (err).code !== 'ENOENT') throw err;
    }
    const owned = names.filter((n) => /^agentvm-[a-z][a-z0-9-]{0,62}$/.test(n)).map((n) => ({ address: `${PREFIX}${n.slice('agentvm-'.length)}` }));
    return { owned, diagnostics: [] };
  },
};

export default provider;
