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
 * One entry of the tool allowlist. kind program: an executable the workload may run, pinned by the sha256 of its bytes. kind mcp: an MCP server the workload may use through its profile's MCP gateway, with the tools it may call, each pinned by the sha256 of its canonical description (decisions/0022). Without kind (the v1alpha1 form {name, version|sha256}): still read and checked, but it grants nothing at run time.
 */
export interface Tool {
  /**
   * program: an executable; mcp: an MCP server. Absent: a kindless entry that grants nothing (rewrite it as a program or mcp entry).
   */
  kind?: 'program' | 'mcp';
  name: string;
  /**
   * Kindless entries only: an exact version.
   */
  version?: string;
  /**
   * program: the sha256 of the executable's bytes. Kindless entries: a content hash.
   */
  sha256?: string;
  /**
   * program only: an absolute path on the host, or a path relative to the workload's release directory.
   */
  path?: string;
  /**
   * mcp only: the argv of a stdio server, its program relative to the release directory (or a program on the gateway PATH, e.g. node).
   *
   * @minItems 1
   */
  command?: [string, ...string[]];
  /**
   * mcp only: the endpoint of a streamable-HTTP server; its host and port must also be an egress destination.
   */
  url?: string;
  /**
   * mcp only: the tools of the server the workload may call. Anything else the server offers is neither listed nor callable.
   */
  tools?: McpToolPin[];
}
/**
 * One MCP tool the workload may call, pinned by the sha256 of its canonical description: canonical JSON of {name, description, inputSchema} (decisions/0022).
 */
export interface McpToolPin {
  name: string;
  sha256: string;
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
  inject?: SecretInjection;
}
/**
 * The workload gets a placeholder instead of the value; the host's egress proxy puts the real value into this header on HTTPS requests to this exact host only (decisions/0023).
 */
export interface SecretInjection {
  /**
   * The exact host name (no wildcard, no address); it must be in spec.egress with a TLS port.
   */
  host: string;
  /**
   * The HTTP request header that carries the credential (x-api-key, authorization).
   */
  header: string;
  /**
   * The header value around the credential, `{}` standing for it (`Bearer {}`). Default `{}`.
   */
  format?: string;
}
export interface DataGrant {
  /**
   * A project path relative to the host's project root; no '..'.
   */
  path: string;
  access: 'read-only' | 'read-write';
}
