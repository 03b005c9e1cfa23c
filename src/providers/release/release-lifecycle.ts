// The host side shared by `release.git` and `release.package`: read what is live, install capture-first, roll back,
// remove, list. The providers differ only in how a release's files are materialised and what they own.
// Invariants:
//   - Capture-first: before the first visible change to a workload (moving a live tree, switching `current`),
//     `beforeMutation` is called with whatever is live — agentvm's release, a hand-installed one, or a hand-modified
//     copy — and that tree is then kept byte for byte (sealed, or moved to `captured-<digest12>`), so it can be
//     restored with `rollbackRelease`. Nothing live is ever deleted by an install.
//   - Everything is built before the first visible change: materialising, sealing and digesting happen in a
//     `.tmp-*` directory; a refusal there leaves the workload exactly as it was.
//   - Idempotent: installing the release that is already live and intact changes nothing and calls no callback.

import { rename } from 'node:fs/promises';
import { errorDiag, hasErrors, warningDiag, type Diagnostic } from '../../diagnostics/index.js';
import type { LiveResource, LockedResource } from '../../model/resources.js';
import type { ApplyResponse, CapturedRelease, ListResponse, ReadRequest, ReadResponse } from '../provider.js';
import {
  capturedReleaseId,
  isReleaseId,
  pathExists,
  WORKLOAD_PATTERN,
  type CurrentState,
  type ReleaseStore,
} from './release-store.js';
import { treeDigest, type TreeDigest } from './tree-digest.js';
import { ContentStore, removeTree } from './content-store.js';
import { sharedStatIndex, type StatIndex } from './stat-index.js';
import { mapBounded } from '../../support/concurrency.js';

export const ReleaseCode = {
  invalidConfig: 'release.invalid-config',
  invalidWorkload: 'release.invalid-workload',
  currentInvalid: 'release.current-invalid',
  irregularEntry: 'release.irregular-entry',
  foreignLeft: 'release.foreign-left',
  rollbackTargetMissing: 'release.rollback-target-missing',
  rollbackDigestMismatch: 'release.rollback-digest-mismatch',
  storeGarbage: 'release.store-garbage',
} as const;

export const RELEASE_ADDRESS_PREFIX = 'release.';

export function releaseAddress(workload: string): string {
  return `${RELEASE_ADDRESS_PREFIX}${workload}`;
}

/** Adds the resource address to diagnostics that do not name one. */
export function atAddress(address: string, diagnostics: Diagnostic[]): Diagnostic[] {
  return diagnostics.map((d) => (d.address === undefined ? { ...d, address } : d));
}

/** The workload of a read request: desired, then locked, then the address itself. */
export function workloadOf(req: Pick<ReadRequest, 'address' | 'desired' | 'locked'>): string {
  return req.desired?.workload ?? req.locked?.workload ?? req.address.slice(RELEASE_ADDRESS_PREFIX.length);
}

export function checkWorkload(workload: string, address: string): Diagnostic[] {
  if (WORKLOAD_PATTERN.test(workload)) return [];
  return [
    errorDiag(ReleaseCode.invalidWorkload, `Workload name ${JSON.stringify(workload)} is not a DNS label.`, {
      address,
    }),
  ];
}

/** What is live for a workload: the `current` state and, when it names a readable tree, that tree's digest. */
export interface LiveRelease {
  state: CurrentState;
  tree?: TreeDigest;
}

/** With `index`, files whose stat it holds are not re-read (stat-index.ts); the answer is the same without. */
export async function readLiveRelease(store: ReleaseStore, workload: string, index?: StatIndex): Promise<LiveRelease> {
  const state = await store.current(workload);
  if (state.kind === 'link' && !state.dangling) return { state, tree: await treeDigest(state.path, index) };
  if (state.kind === 'directory') return { state, tree: await treeDigest(state.path, index) };
  return { state };
}

/** The identity of a live release id: the locked identity when the lockfile names that release, else the id itself. */
export function liveIdentity(releaseId: string, locked: LockedResource | undefined): string {
  return locked !== undefined && locked.attributes?.releaseId === releaseId ? locked.identity : releaseId;
}

function irregularWarnings(tree: TreeDigest | undefined, where: string, address: string): Diagnostic[] {
  if (!tree || tree.irregular.length === 0) return [];
  const list = tree.irregular.map((e) => `${e.path} (${e.kind})`).join(', ');
  return [
    warningDiag(ReleaseCode.irregularEntry, `${where} contains entries a release may not hold: ${list}.`, {
      address,
      detail: 'Releases hold regular files and directories only; these were added outside agentvm.',
    }),
  ];
}

export async function readRelease(store: ReleaseStore, req: ReadRequest, provider: string): Promise<ReadResponse> {
  const workload = workloadOf(req);
  const invalid = checkWorkload(workload, req.address);
  if (invalid.length > 0) return { live: { address: req.address, provider, exists: false }, diagnostics: invalid };

  const index = await sharedStatIndex(req.host.paths.cache, req.snapshot);
  const live = await readLiveRelease(store, workload, index);
  // What this read hashed is written back (coalesced across the plan's reads), git-status style.
  await index.save();
  const releases = await store.releases(workload);
  const diagnostics: Diagnostic[] = [];
  let result: LiveResource;
  switch (live.state.kind) {
    case 'none':
      result = { address: req.address, provider, exists: false, attributes: { current: 'none', releases } };
      break;
    case 'invalid':
      diagnostics.push(
        warningDiag(ReleaseCode.currentInvalid, `The live release link is not usable: ${live.state.detail}.`, {
          address: req.address,
        }),
      );
      result = { address: req.address, provider, exists: true, attributes: { current: 'invalid', releases } };
      break;
    case 'directory':
      diagnostics.push(...irregularWarnings(live.tree, live.state.path, req.address));
      result = {
        address: req.address,
        provider,
        exists: true,
        ...(live.tree ? { digest: live.tree.digest } : {}),
        attributes: { current: 'directory', path: live.state.path, releases },
      };
      break;
    case 'link':
      if (live.state.dangling) {
        result = {
          address: req.address,
          provider,
          exists: false,
          attributes: { current: 'dangling', releaseId: live.state.releaseId, releases },
        };
        break;
      }
      diagnostics.push(...irregularWarnings(live.tree, live.state.path, req.address));
      result = {
        address: req.address,
        provider,
        exists: true,
        identity: liveIdentity(live.state.releaseId, req.locked),
        ...(live.tree ? { digest: live.tree.digest } : {}),
        attributes: { current: 'link', releaseId: live.state.releaseId, path: live.state.path, releases },
      };
      break;
  }
  return { live: result, diagnostics };
}

/** How the live tree is kept before a change. */
interface CapturePlan {
  captured: CapturedRelease | null;
  /** Move the live tree to a `captured-*` release (or drop it when that slot already holds the same bytes). */
  move?: { from: string; to: string; alreadyThere: boolean };
  /** A foreign release left in place as the rollback target: sealed so it stays byte for byte. */
  seal?: string;
  /** A tampered copy moved aside for inspection only (not a rollback target). */
  kept?: string;
  diagnostics: Diagnostic[];
}

/** A free `captured-<digest>` slot, or the one that already holds exactly these bytes. */
async function captureSlot(
  store: ReleaseStore,
  workload: string,
  digest: string,
): Promise<{ releaseId: string; path: string; alreadyThere: boolean }> {
  for (const length of [12, 20, 32, 64]) {
    const releaseId = capturedReleaseId(digest, length);
    const slot = store.releasePath(workload, releaseId);
    if (!(await pathExists(slot))) return { releaseId, path: slot, alreadyThere: false };
    const there = await treeDigest(slot).catch(() => undefined);
    if (there?.digest === digest) return { releaseId, path: slot, alreadyThere: true };
  }
  throw new Error(`bug: no free capture slot for ${digest} in ${store.workloadDir(workload)}`);
}

/**
 * Decides how to keep what is live. `replacing` names the release id whose directory is about to be replaced (a
 * modified copy): when it is the live one, that copy is kept as `captured-*` instead of being discarded.
 */
async function planCapture(
  store: ReleaseStore,
  workload: string,
  address: string,
  live: LiveRelease,
  locked: LockedResource | undefined,
  replacing: string | undefined,
): Promise<CapturePlan> {
  const state = live.state;
  switch (state.kind) {
    case 'none':
      return { captured: null, diagnostics: [] };
    case 'invalid':
      return {
        captured: null,
        diagnostics: [
          warningDiag(
            ReleaseCode.currentInvalid,
            `The live release link is not usable (${state.detail}); it is replaced and nothing is captured.`,
            { address },
          ),
        ],
      };
    case 'link': {
      if (state.dangling || !live.tree) return { captured: null, diagnostics: [] };
      const digest = live.tree.digest;
      const diagnostics = irregularWarnings(live.tree, state.path, address);
      if (replacing === state.releaseId) {
        // A tampered copy of the very release being reinstalled (a repair): kept aside as `captured-*` for
        // inspection, but never offered as the rollback target — rolling back to it would reinstate the tampering,
        // and the recorded target (the release before this one) stays what it was (issue 18).
        const slot = await captureSlot(store, workload, digest);
        return {
          captured: null,
          move: { from: state.path, to: slot.path, alreadyThere: slot.alreadyThere },
          kept: slot.releaseId,
          diagnostics,
        };
      }
      const ours = locked !== undefined && locked.attributes?.releaseId === state.releaseId && locked.digest === digest;
      return {
        captured: {
          identity: ours ? locked.identity : state.releaseId,
          digest,
          releaseId: state.releaseId,
          foreign: !ours,
        },
        ...(ours ? {} : { seal: state.path }),
        diagnostics,
      };
    }
    case 'directory': {
      if (!live.tree) return { captured: null, diagnostics: [] };
      const digest = live.tree.digest;
      const slot = await captureSlot(store, workload, digest);
      return {
        captured: { identity: slot.releaseId, digest, releaseId: slot.releaseId, foreign: true },
        move: { from: state.path, to: slot.path, alreadyThere: slot.alreadyThere },
        diagnostics: irregularWarnings(live.tree, state.path, address),
      };
    }
  }
}

async function executeCapture(store: ReleaseStore, plan: CapturePlan): Promise<void> {
  if (plan.move) {
    if (plan.move.alreadyThere) await store.remove(plan.move.from);
    else {
      await rename(plan.move.from, plan.move.to);
      await store.seal(plan.move.to);
    }
  }
  if (plan.seal) await store.seal(plan.seal);
}

async function callBeforeMutation(
  beforeMutation: ((captured: CapturedRelease | null) => Promise<void>) | undefined,
  captured: CapturedRelease | null,
  onAbort: () => Promise<void>,
): Promise<void> {
  if (!beforeMutation) return;
  try {
    await beforeMutation(captured);
  } catch (error) {
    // The caller could not record the rollback target: abort before anything visible changes.
    await onAbort();
    throw error;
  }
}

export interface InstallRequest {
  store: ReleaseStore;
  address: string;
  provider: string;
  workload: string;
  /** Directory name of the release (validated by the provider). */
  releaseId: string;
  /** Desired identity, recorded in the lockfile entry. */
  identity: string;
  locked?: LockedResource;
  /** Creates `dir` (it does not exist yet) and fills it with exactly the release; errors mean nothing is installed. */
  materialise: (dir: string) => Promise<Diagnostic[]>;
  /**
   * What determines the release's bytes before they exist (a git repository, commit and subdir; a package
   * integrity): when the content store already holds the tree this source made, it is linked, not materialised.
   */
  sourceKey?: string;
  /** Checks that must pass on every install, also when the tree comes from the store (the artifact's signature). */
  precheck?: () => Promise<Diagnostic[]>;
  progress?: (message: string) => void;
  beforeMutation?: (captured: CapturedRelease | null) => Promise<void>;
}

interface TreeAt {
  exists: boolean;
  digest?: string;
}

async function treeAt(file: string): Promise<TreeAt> {
  if (!(await pathExists(file))) return { exists: false };
  try {
    return { exists: true, digest: (await treeDigest(file)).digest };
  } catch {
    return { exists: true }; // not a directory: replaced below
  }
}

/** Builds the release at `temp` (which must not exist) as links to its content-store entry, materialising it once. */
async function materialiseFromStore(
  req: InstallRequest,
  temp: string,
): Promise<{ digest?: string; diagnostics: Diagnostic[] }> {
  const { address, releaseId } = req;
  const progress = req.progress ?? (() => {});
  const content = new ContentStore(req.store.releasesDir);
  await content.prepare();
  const diagnostics: Diagnostic[] = [];
  if (req.precheck) {
    const checked = atAddress(address, await req.precheck());
    if (hasErrors(checked)) return { diagnostics: checked };
    diagnostics.push(...checked);
  }
  for (let attempt = 0; attempt < 2; attempt++) {
    let digest = req.sourceKey === undefined ? undefined : await content.lookupSource(req.sourceKey);
    if (digest === undefined) {
      const building = content.tempPath();
      progress(`${address}: materialising ${releaseId}`);
      const made = atAddress(address, await req.materialise(building));
      if (hasErrors(made)) {
        await removeTree(building);
        return { diagnostics: made };
      }
      diagnostics.push(...made);
      await req.store.seal(building);
      const tree = await treeDigest(building);
      if (tree.irregular.length > 0) {
        await removeTree(building);
        return {
          diagnostics: [
            ...diagnostics,
            ...irregularWarnings(tree, releaseId, address).map((d) => ({ ...d, severity: 'error' as const })),
          ],
        };
      }
      digest = tree.digest;
      await content.adopt(building, digest);
      if (req.sourceKey !== undefined) await content.recordSource(req.sourceKey, digest);
    } else {
      progress(`${address}: ${releaseId} is in the content store (${digest})`);
    }
    // False only when the entry was edited between its check and the link: build it again from the source.
    if (await content.link(digest, temp)) return { digest, diagnostics };
  }
  throw new Error(`the content store entry for ${releaseId} changed twice while it was being linked; apply again`);
}

/** Installs a release capture-first and points `current` at it. See the file header for the invariants. */
export async function installRelease(req: InstallRequest): Promise<ApplyResponse> {
  const { store, workload, releaseId, address } = req;
  const progress = req.progress ?? (() => {});
  const diagnostics: Diagnostic[] = [];

  const leftovers = await store.prepareWorkload(workload);
  if (leftovers > 0)
    progress(
      `${address}: removed ${leftovers} leftover temporary entr${leftovers === 1 ? 'y' : 'ies'} of an interrupted apply`,
    );
  const target = store.releasePath(workload, releaseId);
  const live = await readLiveRelease(store, workload);
  const liveIsTarget = live.state.kind === 'link' && !live.state.dangling && live.state.releaseId === releaseId;
  const existing: TreeAt =
    liveIsTarget && live.tree ? { exists: true, digest: live.tree.digest } : await treeAt(target);
  const expected =
    req.locked && req.locked.identity === req.identity && req.locked.attributes?.releaseId === releaseId
      ? req.locked.digest
      : undefined;

  let fresh: string | undefined;
  let digest: string;
  if (existing.digest !== undefined && existing.digest === expected) {
    digest = existing.digest;
    progress(`${address}: release ${releaseId} is already installed and intact`);
  } else {
    const temp = store.tempPath(workload);
    const made = await materialiseFromStore(req, temp);
    if (made.digest === undefined) return { diagnostics: made.diagnostics };
    diagnostics.push(...made.diagnostics);
    digest = made.digest;
    if (existing.digest === digest) {
      await store.remove(temp);
      progress(`${address}: release ${releaseId} is already installed and intact`);
    } else {
      fresh = temp;
      if (existing.exists)
        progress(
          `${address}: the installed copy of ${releaseId} differs (digest ${existing.digest ?? 'unreadable'}); reinstalling it`,
        );
    }
  }

  const locked = {
    address,
    provider: req.provider,
    workload,
    identity: req.identity,
    digest,
    attributes: { releaseId, path: target },
  };
  const release = { identity: req.identity, digest, releaseId };
  if (fresh === undefined && liveIsTarget) return { locked, release, diagnostics };

  const capture = await planCapture(
    store,
    workload,
    address,
    live,
    req.locked,
    fresh !== undefined && existing.exists ? releaseId : undefined,
  );
  diagnostics.push(...capture.diagnostics);
  await callBeforeMutation(req.beforeMutation, capture.captured, async () => {
    if (fresh !== undefined) await store.remove(fresh);
  });

  await executeCapture(store, capture);
  if (capture.captured)
    progress(`${address}: captured ${capture.captured.releaseId} (${capture.captured.digest}) as the rollback target`);
  if (capture.kept)
    progress(
      `${address}: kept the modified copy of ${releaseId} as ${capture.kept} for inspection (not a rollback target)`,
    );
  if (fresh !== undefined) {
    if (await pathExists(target)) {
      // A modified copy that is not live (a live one was moved by the capture): set aside, then discarded.
      const aside = store.tempPath(workload);
      await rename(target, aside);
      await rename(fresh, target);
      await store.remove(aside);
    } else {
      await rename(fresh, target);
    }
  }
  await store.switchCurrent(workload, releaseId);
  progress(`${address}: current → ${releaseId}`);
  return { locked, release, captured: capture.captured, diagnostics };
}

export interface RollbackOptions {
  /** Identity recorded in the returned lockfile entry; default: the release id. */
  identity?: string;
  /** The lockfile entry, to tell agentvm's own live release from a foreign one when capturing. */
  locked?: LockedResource;
  progress?: (message: string) => void;
  beforeMutation?: (captured: CapturedRelease | null) => Promise<void>;
}

export interface RollbackResponse {
  releaseId: string;
  /** The new lockfile entry (digest verified byte for byte); undefined when refused. */
  locked?: Omit<LockedResource, 'commit' | 'appliedAt'>;
  /** What was live before (kept as it was); undefined when nothing changed. */
  captured?: CapturedRelease | null;
  diagnostics: Diagnostic[];
}

/**
 * Points `current` back at an installed release after proving its files are byte for byte the recorded ones.
 * A missing release or a digest mismatch is refused with a diagnostic and nothing changes.
 */
export async function rollbackRelease(
  store: ReleaseStore,
  target: { address: string; provider: string; workload: string; releaseId: string; expectedDigest: string },
  options: RollbackOptions = {},
): Promise<RollbackResponse> {
  const { address, workload, releaseId, expectedDigest } = target;
  const progress = options.progress ?? (() => {});
  const invalid = checkWorkload(workload, address);
  if (invalid.length > 0) return { releaseId, diagnostics: invalid };
  if (!isReleaseId(releaseId)) {
    return {
      releaseId,
      diagnostics: [
        errorDiag(ReleaseCode.rollbackTargetMissing, `${JSON.stringify(releaseId)} is not a release id.`, { address }),
      ],
    };
  }
  const releasePath = store.releasePath(workload, releaseId);
  const tree = await treeAt(releasePath);
  if (tree.digest === undefined) {
    return {
      releaseId,
      diagnostics: [
        errorDiag(
          ReleaseCode.rollbackTargetMissing,
          `Rollback target ${releaseId} is not installed for workload ${workload}.`,
          {
            address,
            detail: `Expected a release directory at ${releasePath}. Re-apply that release from its source instead.`,
          },
        ),
      ],
    };
  }
  if (tree.digest !== expectedDigest) {
    return {
      releaseId,
      diagnostics: [
        errorDiag(
          ReleaseCode.rollbackDigestMismatch,
          `Rollback target ${releaseId} is not byte for byte the recorded release; nothing was switched.`,
          {
            address,
            detail: `Expected ${expectedDigest}, found ${tree.digest}. Its files were changed after it was recorded; re-apply that release from its source.`,
          },
        ),
      ],
    };
  }
  const locked = {
    address,
    provider: target.provider,
    workload,
    identity: options.identity ?? releaseId,
    digest: tree.digest,
    attributes: { releaseId, path: releasePath },
  };

  await store.prepareWorkload(workload);
  const live = await readLiveRelease(store, workload);
  if (live.state.kind === 'link' && !live.state.dangling && live.state.releaseId === releaseId) {
    progress(`${address}: ${releaseId} is already live`);
    return { releaseId, locked, diagnostics: [] };
  }
  const capture = await planCapture(store, workload, address, live, options.locked, undefined);
  await callBeforeMutation(options.beforeMutation, capture.captured, async () => {});
  await executeCapture(store, capture);
  await store.seal(releasePath);
  await store.switchCurrent(workload, releaseId);
  progress(`${address}: rolled back, current → ${releaseId}`);
  return { releaseId, locked, captured: capture.captured, diagnostics: capture.diagnostics };
}

export interface RemoveRequest {
  store: ReleaseStore;
  address: string;
  workload: string;
  /** True for release ids this provider installs; others (captured, hand-made) are left and reported. */
  owns: (releaseId: string) => boolean;
  progress?: (message: string) => void;
  beforeMutation?: (captured: CapturedRelease | null) => Promise<void>;
}

/** Removes `current` and the provider's releases of a workload. Nothing it did not install is deleted. */
export async function removeReleases(req: RemoveRequest): Promise<ApplyResponse> {
  const { store, workload, address } = req;
  const invalid = checkWorkload(workload, address);
  if (invalid.length > 0) return { diagnostics: invalid };
  if (!(await pathExists(store.workloadDir(workload)))) return { release: null, diagnostics: [] };

  const state = await store.current(workload);
  const releases = await store.releases(workload);
  const remove = releases.filter(req.owns);
  const kept = releases.filter((id) => !req.owns(id));
  if (state.kind === 'directory') kept.push('current (a directory)');
  const unlink = state.kind === 'link' || state.kind === 'invalid';
  if (unlink || remove.length > 0) {
    await callBeforeMutation(req.beforeMutation, null, async () => {});
    if (unlink) await store.unlinkCurrent(workload);
    for (const id of remove) {
      await store.remove(store.releasePath(workload, id));
      req.progress?.(`${address}: removed release ${id}`);
    }
  }
  await store.prepareWorkload(workload); // clears leftovers of interrupted applies
  await store.removeWorkloadIfEmpty(workload);
  const diagnostics: Diagnostic[] = [];
  if (kept.length > 0) {
    diagnostics.push(
      warningDiag(ReleaseCode.foreignLeft, `Left in ${store.workloadDir(workload)}: ${kept.join(', ')}.`, {
        address,
        detail:
          'agentvm did not install these (captured or hand-made releases). Remove them by hand when they are no longer needed as rollback targets.',
      }),
    );
  }
  return { release: null, diagnostics };
}

/** Workloads whose `current` the provider claims (`releaseId` undefined when `current` is a real directory). */
/** Workloads of the store with a live release (`current` a link or a directory): its id and the releases beside it. */
type StoreSurvey = Array<{ workload: string; releaseId: string | undefined; releases: string[] }>;

/** Several workloads at a time: each is two small file-system calls, and thousands of them in sequence add up. */
const SURVEY_CONCURRENCY = 16;

async function surveyStore(store: ReleaseStore): Promise<StoreSurvey> {
  const found = await mapBounded(await store.workloads(), SURVEY_CONCURRENCY, async (workload) => {
    const state = await store.current(workload);
    if (state.kind !== 'link' && state.kind !== 'directory') return undefined;
    return {
      workload,
      releaseId: state.kind === 'link' ? state.releaseId : undefined,
      releases: await store.releases(workload),
    };
  });
  return found.filter((f): f is StoreSurvey[number] => f !== undefined);
}

/**
 * The workloads whose live release `claims` accepts. Both release providers list the same store: with a plan's
 * `snapshot`, it is surveyed once for both (a promise, so concurrent lists share it).
 */
export async function listReleases(
  store: ReleaseStore,
  claims: (releaseId: string | undefined, releases: string[]) => boolean,
  snapshot?: Map<string, unknown>,
): Promise<ListResponse> {
  const key = `release.store:${store.releasesDir}`;
  let survey = snapshot?.get(key) as Promise<StoreSurvey> | undefined;
  if (survey === undefined) {
    survey = surveyStore(store);
    snapshot?.set(key, survey);
  }
  const owned: ListResponse['owned'] = [];
  for (const { workload, releaseId, releases } of await survey) {
    if (!claims(releaseId, releases)) continue;
    owned.push({ address: releaseAddress(workload), ...(releaseId === undefined ? {} : { identity: releaseId }) });
  }
  return { owned, diagnostics: await garbageLine(store, snapshot) };
}

/**
 * The plan's line about the content store: what garbage collection at the end of the next apply would free. Said
 * once per plan (both release providers list the same store), and only when there is something to free.
 */
async function garbageLine(store: ReleaseStore, snapshot?: Map<string, unknown>): Promise<Diagnostic[]> {
  const key = `release.store-garbage:${store.releasesDir}`;
  if (snapshot?.has(key)) return [];
  snapshot?.set(key, true);
  const content = new ContentStore(store.releasesDir);
  const garbage = await content.garbage();
  if (garbage.digests.length === 0) return [];
  const n = garbage.digests.length;
  return [
    warningDiag(
      ReleaseCode.storeGarbage,
      `Release store: garbage collection would free ${n} release tree${n === 1 ? '' : 's'} (${garbage.bytes} bytes) that no release directory, lockfile entry or rollback target refers to.`,
      {
        detail: `The next apply removes them from ${content.dir}: ${garbage.digests.slice(0, 5).join(', ')}${n > 5 ? ', …' : ''}.`,
      },
    ),
  ];
}

/**
 * End of an apply: removes content-store entries no release refers to any more (the plan's `release.store-garbage`),
 * then records the stat of every file left in the store in the stat index (`cacheDir`): the release directories
 * are links to those same inodes, so the next plan only stats them. Files this apply linked in the last second are
 * racily clean and are hashed once more by that plan (stat-index.ts).
 */
export async function collectStoreGarbage(
  store: ReleaseStore,
  cacheDir: string,
  progress?: (message: string) => void,
): Promise<Diagnostic[]> {
  const content = new ContentStore(store.releasesDir);
  const freed = await content.collect();
  if (freed.digests.length > 0)
    progress?.(`release store: freed ${freed.digests.length} unreferenced release tree(s), ${freed.bytes} bytes`);
  const index = await sharedStatIndex(cacheDir, undefined);
  for (const entry of await content.entryPaths()) await treeDigest(entry, index).catch(() => undefined);
  await index.save();
  return [];
}
