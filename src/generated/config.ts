// GENERATED from schemas/config.schema.json by scripts/gen-types.js. Do not edit: edit the schema and run `npm run gen`.

/**
 * agentvm.yaml: repository-wide policy overrides (tighten only), third-party providers and the trusted root.
 */
export interface RepoConfig {
  apiVersion: 'agentvm.dev/v1alpha1';
  kind: 'Config';
  metadata: {
    name: string;
    description?: string;
  };
  spec?: {
    policy?: {
      /**
       * Per-tier controls to REQUIRE in addition to the built-in table. Overrides may only tighten.
       */
      tiers?: {
        low?: TierControls;
        moderate?: TierControls;
        high?: TierControls;
        critical?: TierControls;
      };
      /**
       * Workloads below this tier are refused.
       */
      minimumTier?: 'low' | 'moderate' | 'high' | 'critical';
    };
    /**
     * Third-party providers, loaded from npm packages installed next to agentvm.
     */
    providers?: {
      package: string;
      version?: string;
      /**
       * A built-in provider type (e.g. gate) this package replaces, deliberately and in review. Without it, a package may only add types agentvm does not ship.
       */
      replaces?: string;
    }[];
    /**
     * A custom Sigstore trusted root, pinned by hash. Default: the public-good root shipped with agentvm.
     */
    trustedRoot?: {
      /**
       * Path relative to the repository root.
       */
      file: string;
      sha256: string;
    };
  };
}
export interface TierControls {
  toolsAllowlist?: boolean;
  secretsByReference?: boolean;
  egressAllowlist?: boolean;
  signedRelease?: boolean;
  audit?: boolean;
  canary?: boolean;
  testedRollback?: boolean;
  untrustedInput?: 'deny' | 'job-only' | 'job-or-egress-allowlist';
}
