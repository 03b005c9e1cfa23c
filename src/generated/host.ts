// GENERATED from schemas/host.schema.json by scripts/gen-types.js. Do not edit: edit the schema and run `npm run gen`.

/**
 * A DNS label: lowercase letters, digits and dashes, starting with a letter, at most 63 characters.
 */
export type Name = string;

/**
 * A host agentvm manages: which workloads it runs, its systemd scope, microVM settings and preview gate listener.
 */
export interface Host {
  apiVersion: 'agentvm.dev/v1alpha1';
  kind: 'Host';
  metadata: Metadata;
  spec: {
    /**
     * Settings for third-party providers (agentvm.yaml spec.providers), one block per provider type. agentvm passes them to the provider's expand() unread; the provider validates its own block. Secrets by reference only, like everywhere else.
     */
    extensions?: {
      [k: string]: {} | undefined;
    };
    /**
     * Names of the workloads (directories under workloads/) this host runs.
     */
    workloads: Name[];
    systemd?: {
      scope?: 'system' | 'user';
    };
    microvm?: {
      driver?: 'qemu' | 'firecracker';
      accel?: 'kvm' | 'tcg' | 'auto';
      maxConcurrentJobs?: number;
    };
    /**
     * Where the host keeps project data. A workload contract's data entries (paths relative to this root) are bound into its units under /srv/agentvm/data/<path>, read-only or read-write as declared; nothing else under the root is visible to them (ADR 0024).
     */
    data?: {
      /**
       * Absolute directory of the project data, under the host root (--root). Without '..'.
       */
      root?: string;
    };
    /**
     * The host's egress proxy (agentvm-egress.service): every profile's only way out.
     */
    egress?: {
      /**
       * DNS servers the proxy asks (ip or ip:port); workloads get no DNS of their own. Default: the host's /etc/resolv.conf.
       *
       * @maxItems 8
       */
      resolvers?:
        | []
        | [string]
        | [string, string]
        | [string, string, string]
        | [string, string, string, string]
        | [string, string, string, string, string]
        | [string, string, string, string, string, string]
        | [string, string, string, string, string, string, string]
        | [string, string, string, string, string, string, string, string];
      /**
       * Extra CA certificate files (absolute paths, PEM) the proxy trusts, besides the system trust store, when it verifies the server of an injected-credential host (decisions/0023): a private CA of your own, or a test upstream. Default: none.
       *
       * @maxItems 8
       */
      upstreamTrustAnchors?:
        | []
        | [string]
        | [string, string]
        | [string, string, string]
        | [string, string, string, string]
        | [string, string, string, string, string]
        | [string, string, string, string, string, string]
        | [string, string, string, string, string, string, string]
        | [string, string, string, string, string, string, string, string];
    };
    gate?: {
      /**
       * Listen address; loopback unless TLS is configured.
       */
      address?: string;
      port?: number;
      /**
       * The origin people reach the gate at when a TLS-terminating proxy is in front of it (https://previews.example.com): grant links use it, session cookies are Secure when it is https, and WebSocket handshakes from it pass the same-origin check.
       */
      publicUrl?: string;
      /**
       * How a preview is named. host (the default): its own origin, <preview>--<workload>.<domain>, so previews cannot read, script or set cookies for each other (ADR 0014). path: every preview under /p/<workload>/<preview>/ on one origin; only where all previews trust each other.
       */
      routing?: 'host' | 'path';
      /**
       * The gate domain under host routing: previews are <preview>--<workload>.<domain>. Default: publicUrl's host name, else localhost (browsers resolve *.localhost to loopback without DNS). Behind a proxy, point the wildcard *.<domain> (DNS and certificate) at it.
       */
      domain?: string;
      tls?: {
        /**
         * Certificate by reference (file:/abs/path).
         */
        cert: string;
        /**
         * Private key by reference (file:/abs/path or systemd-creds:).
         */
        key: string;
      };
    };
  };
}
export interface Metadata {
  name: Name;
  description?: string;
  labels?: {
    [k: string]: string | undefined;
  };
}
