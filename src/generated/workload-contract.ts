// GENERATED from schemas/workload-contract.schema.json by scripts/gen-types.js. Do not edit: edit the schema and run `npm run gen`.

/**
 * A DNS label: lowercase letters, digits and dashes, starting with a letter, at most 63 characters.
 */
export type Name = string;
export type RiskTier = 'low' | 'moderate' | 'high' | 'critical';

/**
 * What a workload MAY do: its risk tier, substrate, tools, egress, secrets (by reference), untrusted inputs and data. Governance reads this; providers enforce it.
 */
export interface WorkloadContract {
  apiVersion: 'agentvm.dev/v1alpha1';
  kind: 'WorkloadContract';
  metadata: Metadata;
  spec: {
    /**
     * Accountable person or team, e.g. an email address.
     */
    owner: string;
    riskTier: RiskTier;
    /**
     * service: Tier-1 systemd gateway units; job: Tier-2 ephemeral microVMs.
     */
    substrate: 'service' | 'job';
    /**
     * Explicit tool allowlist. Empty or absent means no tools; anything unlisted is denied.
     */
    tools?: Tool[];
    /**
     * Explicit egress allowlist (host:port). Absent means no egress at all.
     */
    egress?: EgressRule[];
    /**
     * Secrets by reference only; values never appear in the repository.
     */
    secrets?: SecretRef[];
    /**
     * Kinds of untrusted input the workload ingests. Any entry forces riskTier high or critical.
     */
    untrustedInputs?: ('email' | 'external-files' | 'transcripts' | 'web' | 'chat' | 'uploads')[];
    /**
     * Project paths the workload may touch.
     */
    data?: DataGrant[];
  };
}
export interface Metadata {
  name: Name;
  description?: string;
  labels?: {
    [k: string]: string | undefined;
  };
}
/**
 * A tool pinned by exact version or by content hash (sha256).
 */
export interface Tool {
  name: string;
  version?: string;
  sha256?: string;
}
export interface EgressRule {
  /**
   * A hostname or an IP address. No wildcards at moderate and above.
   */
  host: string;
  port: number;
  protocol?: 'tcp' | 'udp';
}
export interface SecretRef {
  /**
   * A DNS label: lowercase letters, digits and dashes, starting with a letter, at most 63 characters.
   */
  name: string;
  /**
   * Where the value lives: file:/abs/path, systemd-creds:/abs/path (encrypted), credstore:<name>, env-file:/abs/path#VAR, vault:<path>#<field>.
   */
  ref: string;
}
export interface DataGrant {
  /**
   * A project path relative to the host's project root; no '..'.
   */
  path: string;
  access: 'read-only' | 'read-write';
}
