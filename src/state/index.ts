// The public API of the state layer: everything above src/state imports from here, and talks to state only through a
// StateBackend (it never builds a state file path itself).

export { assertHostName } from './host-paths.js';
export {
  writeFileAtomic,
  readJsonFile,
  storageError,
  freeSpace,
  removeDeadTemps,
  fsyncDirectory,
  threadPoolSync,
  type AtomicWriteOptions,
  type DurableSync,
} from './atomic-file.js';
export { selfIdentity, provablyDead, identityFields, type ProcessIdentity } from './process-identity.js';
export {
  LOCKFILE_FORMAT_VERSION,
  MAX_REHEARSALS,
  emptyLockfile,
  applyOps,
  rollbackOp,
  withResource,
  withoutResource,
  lockedResource,
  withRelease,
  withRollbackTarget,
  withRehearsal,
  withoutWorkload,
  withCommit,
  withAuditHead,
  serializeLockfile,
  parseLockfile,
  type Lockfile,
  type LockfileOp,
  type LockfileSource,
  type AuditHead,
  type ReleaseRef,
  type RollbackRehearsal,
  type RollbackTarget,
  type WorkloadState,
} from './lockfile.js';
export {
  DEFAULT_LEASE_MS,
  LeaseLock,
  LeaseHeldError,
  acquireLeaseLock,
  readLeaseRecord,
  forceUnlockLease,
  leaseStaleness,
  describeHolder,
  type LeaseRecord,
  type LeaseOptions,
} from './lease-lock.js';
export {
  ApplyLog,
  MIN_CHECKPOINT_INTERVAL,
  type ApplyStart,
  type AppendBatch,
  type AppendMarks,
  type AppendResult,
  type ApplyLogWrites,
} from './apply-log.js';
export { WAL_FORMAT_VERSION, type JournalRecord, type JournalFailure } from './wal.js';
export {
  AUDIT_FILE_NAME,
  GENESIS_HASH,
  appendAudit,
  appendAuditBatchDurable,
  verifyAuditLog,
  tailAudit,
  auditHash,
  canonicalJson,
  serializeAuditRecord,
  type AuditEntry,
  type AuditEvent,
  type AuditResult,
  type AuditVerification,
  type ExpectedAuditHead,
} from './audit-log.js';
export { LocalStateBackend, type StateBackend } from './backend.js';
export type { ApplyLogHandle, AuditedStep, HeldLease } from './backend-types.js';
export { GroupCommit, type CommittedStep, type GroupCommitOptions } from './group-commit.js';
