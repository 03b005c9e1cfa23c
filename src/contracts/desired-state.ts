// Builds the typed desired state from the files of one commit: classifies each file by where it sits, parses it
// with positions, validates it against its schema, and checks the cross-file facts the schemas cannot see
// (names match their directories, hosts name workloads that exist). Governance runs on the result.
// Invariant: every problem becomes a diagnostic; nothing here throws for bad input, and all files are checked.

import { compareDiagnostics, errorDiag, warningDiag, type Diagnostic } from '../diagnostics/index.js';
import type { RepoConfig } from '../generated/config.js';
import type { Host } from '../generated/host.js';
import type { WorkloadContract } from '../generated/workload-contract.js';
import type { WorkloadManifest } from '../generated/workload-manifest.js';
import { didYouMean } from './did-you-mean.js';
import type { DesiredStateSource, RepoFile } from './git-source.js';
import { openDocumentCache, type DocumentCache } from './document-cache.js';
import { validateAgainstSchema } from './schema-validation.js';
import { holdsSecret } from '../secrets/secret-scan.js';
import type { DocumentKind } from './schemas.js';
import { parseYamlDocument, type JsonPath, type YamlDocument } from './yaml-document.js';
import type { SourceLocation } from '../diagnostics/index.js';

export interface LoadedDocument<T> {
  file: string;
  value: T;
  locate(path: JsonPath, opts?: { key?: boolean }): SourceLocation;
}

export interface WorkloadDefinition {
  name: string;
  dir: string;
  contract?: LoadedDocument<WorkloadContract>;
  manifest?: LoadedDocument<WorkloadManifest>;
  /** Other files in the workload directory (signature bundles, keys), by path relative to the directory. */
  files: Map<string, string>;
}

export interface DesiredState {
  repo: string;
  ref: string;
  commit: string | null;
  uncommitted: boolean;
  config?: LoadedDocument<RepoConfig>;
  hosts: Map<string, LoadedDocument<Host>>;
  workloads: Map<string, WorkloadDefinition>;
  /** Every other file read from the commit, by repo path (e.g. a trusted root under trust/). */
  files: Map<string, string>;
  /**
   * Documents that parsed as YAML but failed their schema. Not deployable, but still scanned for committed secrets:
   * one typo elsewhere in a file must not hide a pasted token.
   */
  rejected: Array<LoadedDocument<unknown>>;
  /** The raw text of every YAML document (parsed or not), by repo path: the secret scan reads comments and tags here. */
  sources?: Map<string, string>;
  diagnostics: Diagnostic[];
}

const HOST_FILE = /^hosts\/([^/]+)\.ya?ml$/;
const WORKLOAD_FILE = /^workloads\/([^/]+)\/(.+)$/;
/** Files read as YAML documents (their raw text is kept for the secret scan of comments). */
const DOCUMENT_FILE = /^(?:agentvm\.ya?ml|hosts\/[^/]+\.ya?ml|workloads\/[^/]+\/(?:contract|manifest)\.yaml)$/;
const NAME = /^[a-z][a-z0-9-]{0,62}$/;

export function buildDesiredState(source: DesiredStateSource): DesiredState {
  const state: DesiredState = {
    repo: source.repo,
    ref: source.ref,
    commit: source.commit,
    uncommitted: source.uncommitted,
    hosts: new Map(),
    workloads: new Map(),
    files: new Map(),
    rejected: [],
    sources: new Map(),
    diagnostics: [...source.diagnostics],
  };
  const diags = state.diagnostics;
  const cache = openDocumentCache();

  for (const f of source.files) {
    if (DOCUMENT_FILE.test(f.path)) state.sources!.set(f.path, f.text);
    if (f.path === 'agentvm.yaml' || f.path === 'agentvm.yml') {
      state.config = load<RepoConfig>('Config', f, diags, state.rejected, cache);
      continue;
    }
    const host = HOST_FILE.exec(f.path);
    if (host) {
      const name = host[1]!;
      if (!checkName(name, f.path, 'host file', diags)) continue;
      const doc = load<Host>('Host', f, diags, state.rejected, cache);
      if (doc) {
        checkMetadataName(doc, name, 'hosts/<name>.yaml', diags);
        state.hosts.set(name, doc);
      }
      continue;
    }
    const wl = WORKLOAD_FILE.exec(f.path);
    if (wl) {
      const name = wl[1]!;
      const rest = wl[2]!;
      if (!checkName(name, f.path, 'workload directory', diags)) continue;
      let def = state.workloads.get(name);
      if (!def) {
        def = { name, dir: `workloads/${name}`, files: new Map() };
        state.workloads.set(name, def);
      }
      if (rest === 'contract.yaml') {
        const doc = load<WorkloadContract>('WorkloadContract', f, diags, state.rejected, cache);
        if (doc) {
          checkMetadataName(doc, name, 'workloads/<name>/', diags);
          def.contract = doc;
        }
      } else if (rest === 'manifest.yaml') {
        const doc = load<WorkloadManifest>('WorkloadManifest', f, diags, state.rejected, cache);
        if (doc) {
          checkMetadataName(doc, name, 'workloads/<name>/', diags);
          def.manifest = doc;
        }
      } else {
        if (/\.ya?ml$/.test(rest)) {
          diags.push(
            warningDiag(
              'repo.unknown-document',
              `${f.path} is not read: a workload directory holds contract.yaml and manifest.yaml.`,
              {
                detail: 'Rename it to contract.yaml or manifest.yaml, or move it out of workloads/.',
                location: { file: f.path, line: 1, column: 1 },
              },
            ),
          );
        }
        def.files.set(rest, f.text);
      }
      continue;
    }
    if (/^hosts\//.test(f.path)) {
      diags.push(
        warningDiag('repo.unknown-document', `${f.path} is not read: hosts/ holds one <host>.yaml per host.`, {
          detail: 'Move it to hosts/<host>.yaml or out of hosts/.',
          location: { file: f.path, line: 1, column: 1 },
        }),
      );
      continue;
    }
    state.files.set(f.path, f.text);
  }

  for (const def of state.workloads.values()) {
    const where = { location: { file: def.dir, line: 1, column: 1 } };
    const contractBroken = diags.some((d) => d.severity === 'error' && d.location?.file === `${def.dir}/contract.yaml`);
    const manifestBroken = diags.some((d) => d.severity === 'error' && d.location?.file === `${def.dir}/manifest.yaml`);
    if (!def.contract && !contractBroken) {
      diags.push(
        errorDiag('workload.missing-contract', `Workload \`${def.name}\` has no contract.yaml.`, {
          detail: `Every workload needs ${def.dir}/contract.yaml (kind: WorkloadContract) saying what it may do.`,
          ...where,
        }),
      );
    }
    if (!def.manifest && !manifestBroken) {
      diags.push(
        errorDiag('workload.missing-manifest', `Workload \`${def.name}\` has no manifest.yaml.`, {
          detail: `Every workload needs ${def.dir}/manifest.yaml (kind: WorkloadManifest) saying how it is deployed.`,
          ...where,
        }),
      );
    }
  }

  const workloadNames = [...state.workloads.keys()];
  for (const [hostName, host] of state.hosts) {
    (host.value.spec.workloads ?? []).forEach((w, i) => {
      if (!state.workloads.has(w)) {
        const guess = didYouMean(w, workloadNames);
        diags.push(
          errorDiag(
            'host.unknown-workload',
            `Host \`${hostName}\` runs workload \`${w}\`, which does not exist${guess ? ` — did you mean \`${guess}\`?` : '.'}`,
            {
              detail: `Create workloads/${w}/ with a contract.yaml and manifest.yaml, or remove it from the host.`,
              path: `$.spec.workloads[${i}]`,
              location: host.locate(['spec', 'workloads', i]),
            },
          ),
        );
      }
    });
  }
  if (source.files.length > 0 && state.hosts.size === 0 && !diags.some((d) => d.location?.file.startsWith('hosts/'))) {
    diags.push(
      warningDiag('repo.no-hosts', 'The repository defines no hosts, so nothing would be deployed.', {
        detail: 'Add hosts/<host>.yaml (kind: Host) listing the workloads it runs.',
      }),
    );
  }
  if (source.files.length === 0) {
    diags.push(
      errorDiag('repo.empty', 'The repository holds no desired state at this ref.', {
        detail:
          'Add agentvm.yaml, hosts/<host>.yaml and workloads/<name>/{contract,manifest}.yaml, or point --repo/--ref elsewhere. `agentvm validate --repo examples/fleet` shows a complete example.',
      }),
    );
  }
  diags.sort(compareDiagnostics);
  cache.save();
  return state;
}

function load<T>(
  kind: DocumentKind,
  f: RepoFile,
  diags: Diagnostic[],
  rejected: Array<LoadedDocument<unknown>>,
  cache: DocumentCache,
): LoadedDocument<T> | undefined {
  const hit = cache.get(kind, f.text);
  if (hit !== undefined) {
    // Parsed and schema-checked cleanly before (same text, same schemas): positions are parsed only if asked for.
    let parsed: YamlDocument | undefined;
    return {
      file: f.path,
      value: hit as T,
      locate: (path, opts) => (parsed ??= parseYamlDocument(f.path, f.text)).locate(path, opts),
    };
  }
  const doc: YamlDocument = parseYamlDocument(f.path, f.text);
  diags.push(...doc.diagnostics);
  if (doc.value === undefined) return undefined;
  const schemaDiags = validateAgainstSchema(kind, doc);
  diags.push(...schemaDiags);
  if (schemaDiags.some((d) => d.severity === 'error')) {
    rejected.push({ file: f.path, value: doc.value, locate: doc.locate });
    return undefined;
  }
  // Only a document the secret scan finds clean is cached: a refused secret must not be kept on disk (issue 18).
  if (doc.diagnostics.length === 0 && schemaDiags.length === 0 && !holdsSecret(doc.value, f.text))
    cache.put(kind, f.text, doc.value);
  return { file: f.path, value: doc.value as T, locate: doc.locate };
}

function checkName(name: string, file: string, what: string, diags: Diagnostic[]): boolean {
  if (NAME.test(name)) return true;
  diags.push(
    errorDiag('name.invalid', `The ${what} name ${JSON.stringify(name)} is not a DNS label.`, {
      detail:
        'Names are lowercase letters, digits and dashes, start with a letter, and have at most 63 characters; rename the file or directory.',
      location: { file, line: 1, column: 1 },
    }),
  );
  return false;
}

function checkMetadataName(
  doc: LoadedDocument<{ metadata: { name: string } }>,
  expected: string,
  where: string,
  diags: Diagnostic[],
): void {
  if (doc.value.metadata.name !== expected) {
    diags.push(
      errorDiag(
        'document.name-mismatch',
        `metadata.name is \`${doc.value.metadata.name}\` but the file sits at ${where.replace('<name>', expected)}.`,
        {
          detail: `Set \`metadata.name: ${expected}\`, or rename the file/directory to match.`,
          path: '$.metadata.name',
          location: doc.locate(['metadata', 'name']),
        },
      ),
    );
  }
}
