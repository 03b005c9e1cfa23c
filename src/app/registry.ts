// The providers this build of agentvm ships, plus third-party ones named in agentvm.yaml.

import type { DesiredState } from '../contracts/desired-state.js';
import type { Diagnostic } from '../diagnostics/index.js';
import { ProviderRegistry, loadThirdPartyProviders } from '../providers/registry.js';
import { GitReleaseProvider, PackageReleaseProvider } from '../providers/release/index.js';
import { SystemdProvider } from '../providers/systemd/index.js';
import { MicrovmProvider } from '../providers/microvm/provider.js';
import { EgressProvider } from '../providers/egress/provider.js';
import { GateProvider } from '../providers/gate/provider.js';
import { McpProvider } from '../providers/mcp/provider.js';

export function builtInRegistry(): ProviderRegistry {
  return new ProviderRegistry([
    new GitReleaseProvider(),
    new PackageReleaseProvider(),
    new MicrovmProvider(),
    new SystemdProvider(),
    new McpProvider(),
    new EgressProvider(),
    new GateProvider(),
  ]);
}

export async function registryFor(
  state: DesiredState,
): Promise<{ registry: ProviderRegistry; diagnostics: Diagnostic[] }> {
  const registry = builtInRegistry();
  const packages = state.config?.value.spec?.providers ?? [];
  const diagnostics = packages.length ? await loadThirdPartyProviders(registry, packages, state.repo) : [];
  return { registry, diagnostics };
}
