// GENERATED from schemas/audit-event.schema.json by scripts/gen-types.js. Do not edit: edit the schema and run `npm run gen`.

/**
 * Lowercase hex SHA-256.
 */
export type Hash = string;

/**
 * One line of the append-only audit log (<audit dir>/audit.jsonl). hash = sha256(prevHash + canonical JSON of the record without hash), so any edit, deletion or reordering breaks the chain. Never holds a secret value.
 */
export interface AuditEvent {
  /**
   * 1 for the first record, +1 for each next one.
   */
  seq: number;
  time: string;
  /**
   * Who: user@hostname.
   */
  actor: string;
  host: string;
  /**
   * The command that acted, e.g. apply, state unlock.
   */
  operation: string;
  /**
   * What happened, e.g. apply.start, resource.apply, apply.finish, lease.takeover, state.unlock.
   */
  event: string;
  address?: string;
  action?: 'create' | 'update' | 'replace' | 'delete' | 'noop';
  result: 'ok' | 'failed' | 'skipped' | 'started';
  before?: Version;
  after?: Version;
  /**
   * A human sentence (e.g. a diagnostic summary). Never a secret value.
   */
  detail?: string;
  applyId?: string;
  gate?: GateAccess;
  prevHash: Hash;
  hash: Hash;
}
export interface Version {
  identity?: string;
  digest?: string;
}
/**
 * Preview gate facts of a gate.* event (grant, revoke, expire, request). Never the one-time token or a session id.
 */
export interface GateAccess {
  /**
   * <workload>/<preview>.
   */
  preview: string;
  grantId?: string;
  /**
   * Who the grant is for (an email from the preview's grantees).
   */
  identity?: string;
  /**
   * Source address of the request (ip:port).
   */
  source?: string;
  method?: string;
  /**
   * Request path as received, with any grant token removed.
   */
  path?: string;
  /**
   * HTTP status the gate answered.
   */
  status?: number;
  /**
   * Why: the grant's stated reason, or why a request was denied.
   */
  reason?: string;
  expires?: string;
}
