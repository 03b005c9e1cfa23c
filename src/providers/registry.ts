// The provider registry: built-in providers plus third-party ones named in agentvm.yaml (`spec.providers`),
// loaded from npm packages installed next to agentvm. A third-party package default-exports a Provider or a
// factory `() => Provider`; it is validated for shape before use, and replaces a built-in type only when
// agentvm.yaml says so (`replaces: <type>`), which plan then reports as a warning on every run.

import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { errorDiag, warningDiag, type Diagnostic } from '../diagnostics/index.js';
import type { Provider } from './provider.js';

export class ProviderRegistry {
  private readonly byType = new Map<string, Provider>();
  /** The expansion of a built-in that a replacement (without an expand of its own) keeps planning from. */
  private readonly inheritedExpand = new Map<string, NonNullable<Provider['expand']>>();

  constructor(providers: Iterable<Provider> = []) {
    for (const p of providers) this.register(p);
  }

  register(p: Provider): void {
    if (this.byType.has(p.type)) throw new Error(`provider type ${p.type} registered twice`);
    this.byType.set(p.type, p);
  }

  /**
   * Swaps the provider of an existing type (a reviewed `replaces:` in agentvm.yaml). A replacement that does not
   * expand resources itself takes over the built-in's resources as the built-in expands them: it replaces how they
   * are read, planned and applied, not which ones the desired state calls for.
   */
  replace(p: Provider): void {
    const old = this.byType.get(p.type);
    if (!old) throw new Error(`provider type ${p.type} is not registered`);
    if (!p.expand && old.expand) this.inheritedExpand.set(p.type, old.expand.bind(old));
    else this.inheritedExpand.delete(p.type);
    this.byType.set(p.type, p);
  }

  get(type: string): Provider | undefined {
    return this.byType.get(type);
  }

  has(type: string): boolean {
    return this.byType.has(type);
  }

  all(): Provider[] {
    return [...this.byType.values()];
  }

  /** The expansion view, in registry order (releases before the units that run them, units before their routes). */
  expanders(): Array<Pick<Provider, 'type' | 'addressPrefix' | 'expand'>> {
    return this.all().map((p) => {
      const expand = p.expand ? p.expand.bind(p) : this.inheritedExpand.get(p.type);
      return { type: p.type, addressPrefix: p.addressPrefix, ...(expand ? { expand } : {}) };
    });
  }

  /** The pure planning view, as the engine needs it. */
  planners(): Map<string, Pick<Provider, 'plan'>> {
    return new Map(this.all().map((p) => [p.type, p]));
  }
}

const METHODS = ['validate', 'read', 'plan', 'apply', 'list'] as const;

export function isProvider(value: unknown): value is Provider {
  if (!value || typeof value !== 'object') return false;
  const v = value as Record<string, unknown>;
  return (
    typeof v.type === 'string' &&
    typeof v.addressPrefix === 'string' &&
    METHODS.every((m) => typeof v[m] === 'function') &&
    (v.expand === undefined || typeof v.expand === 'function')
  );
}

/**
 * Loads third-party providers. `resolveFrom` is the directory whose node_modules holds them (the desired-state
 * repository or agentvm's own install). Returns diagnostics instead of throwing, so one bad provider is reported
 * alongside everything else.
 */
export async function loadThirdPartyProviders(
  registry: ProviderRegistry,
  packages: ReadonlyArray<{ package: string; version?: string; replaces?: string }>,
  resolveFrom: string,
): Promise<Diagnostic[]> {
  const diags: Diagnostic[] = [];
  const require = createRequire(pathToFileURL(`${resolveFrom.replace(/\/$/, '')}/`));
  for (const spec of packages) {
    const where = { location: { file: 'agentvm.yaml', line: 1, column: 1 } };
    let entry: string;
    try {
      entry = require.resolve(spec.package);
    } catch {
      diags.push(
        errorDiag('provider.not-installed', `Provider package \`${spec.package}\` is not installed.`, {
          detail: `Run \`npm install ${spec.package}${spec.version ? `@${spec.version}` : ''}\` next to the repository, or remove it from agentvm.yaml.`,
          ...where,
        }),
      );
      continue;
    }
    try {
      if (spec.version) {
        const pkg = require(`${spec.package}/package.json`) as { version?: string };
        if (pkg.version !== spec.version) {
          diags.push(
            errorDiag(
              'provider.version-mismatch',
              `Provider \`${spec.package}\` is ${pkg.version ?? 'unknown'}, agentvm.yaml pins ${spec.version}.`,
              { detail: `Install exactly ${spec.package}@${spec.version}.`, ...where },
            ),
          );
          continue;
        }
      }
      const mod = (await import(pathToFileURL(entry).href)) as { default?: unknown };
      const exported = typeof mod.default === 'function' ? (mod.default as () => unknown)() : mod.default;
      if (!isProvider(exported)) {
        diags.push(
          errorDiag('provider.invalid', `Package \`${spec.package}\` does not export a provider.`, {
            detail: `Its default export must be an object (or a factory returning one) with type, addressPrefix and ${METHODS.join('/')}.`,
            ...where,
          }),
        );
        continue;
      }
      if (spec.replaces !== undefined && spec.replaces !== exported.type) {
        diags.push(
          errorDiag(
            'provider.replaces-mismatch',
            `Provider \`${spec.package}\` supplies type \`${exported.type}\`, but agentvm.yaml says it replaces \`${spec.replaces}\`.`,
            { detail: `Set replaces: ${exported.type}, or remove replaces if the type is new.`, ...where },
          ),
        );
        continue;
      }
      if (registry.has(exported.type)) {
        if (spec.replaces !== exported.type) {
          diags.push(
            errorDiag(
              'provider.duplicate',
              `Provider type \`${exported.type}\` from \`${spec.package}\` is already built in.`,
              {
                detail: `To replace the built-in provider deliberately, add \`replaces: ${exported.type}\` to this entry in agentvm.yaml; otherwise choose another type name.`,
                ...where,
              },
            ),
          );
          continue;
        }
        registry.replace(exported);
        diags.push(
          warningDiag(
            'provider.replaced',
            `The built-in \`${exported.type}\` provider is replaced by \`${spec.package}\`${spec.version ? `@${spec.version}` : ''}.`,
            {
              detail:
                'agentvm.yaml asks for it (replaces:); every resource of this type is planned and applied by that package.',
              ...where,
            },
          ),
        );
        continue;
      }
      registry.register(exported);
    } catch (err) {
      diags.push(
        errorDiag(
          'provider.load-failed',
          `Provider \`${spec.package}\` failed to load: ${err instanceof Error ? err.message : String(err)}.`,
          { detail: 'Fix or remove the provider package.', ...where },
        ),
      );
    }
  }
  return diags;
}
