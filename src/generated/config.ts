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
     * Where hosts keep their state (ADR 0017). Default: local files under each host's root. `agentvm state migrate` prepares a PostgreSQL database.
     */
    state?: {
      backend: 'local' | 'postgres';
      /**
       * `env:NAME`: the environment variable holding the PostgreSQL URL (default env:AGENTVM_PG_URL). A literal URL is refused: it must never be in git.
       */
      url?: string;
    };
    /**
     * Rollout waves for hosts in pull mode (`agentvm agent`, ADR 0017): a new commit reaches each wave only after every host of the waves before it applied it and reports healthy, and the wave's pause passed. Hosts in no wave go last.
     */
    rollout?: {
      /**
       * @maxItems 20
       */
      waves?:
        | []
        | [
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            }
          ]
        | [
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            }
          ]
        | [
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            }
          ]
        | [
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            }
          ]
        | [
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            }
          ]
        | [
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            }
          ]
        | [
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            }
          ]
        | [
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            }
          ]
        | [
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            }
          ]
        | [
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            }
          ]
        | [
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            }
          ]
        | [
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            }
          ]
        | [
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            }
          ]
        | [
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            }
          ]
        | [
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            }
          ]
        | [
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            }
          ]
        | [
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            }
          ]
        | [
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            }
          ]
        | [
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            }
          ]
        | [
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            },
            {
              name: string;
              /**
               * Host names; `*` matches any characters.
               *
               * @minItems 1
               */
              hosts: [string, ...string[]];
              pauseSeconds?: number;
            }
          ];
      /**
       * Hosts left out of rollouts (their agents plan and publish, never apply).
       */
      exclude?: string[];
      /**
       * A host that has not published for this long is deferred: it does not hold later waves back (default 3600).
       */
      deferUnseenAfterSeconds?: number;
    };
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
