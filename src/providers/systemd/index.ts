// The systemd provider's public surface: the provider, its endpoints (system/user/offline managers), the unit
// renderer and parser, the restart table and the offline analyzers.

export {
  SystemdProvider,
  defaultEndpoint,
  gatewayOnline,
  UNIT_ADDRESS_PREFIX,
  type SystemdProviderOptions,
} from './provider.js';
export {
  systemEndpoint,
  userEndpoint,
  accountNamed,
  SYSTEMD_USER_ENV,
  type SystemdEndpoint,
  type UserAccount,
  type UserEndpointOptions,
} from './systemctl.js';
export {
  renderGateway,
  renderTemplate,
  parseGatewayConfig,
  hardeningFor,
  instanceUnit,
  dropInPath,
  TEMPLATE_UNIT,
  DROP_IN_FILE,
  OWNER_KEY,
  RUNTIME_DIGEST_ENV,
  type GatewayConfig,
  type RenderContext,
  type RenderedGateway,
  type RiskTier,
} from './gateway-unit.js';
export { assessGateway, type GatewayAssessment } from './gateway-plan.js';
export { keyEffect, changeEffect, RESTART_TABLE } from './restart-table.js';
export {
  parseUnitFile,
  serializeUnitFile,
  normalizeUnit,
  diffUnits,
  execLine,
  environmentAssignment,
  escapeExecArg,
  UnitValueError,
} from './unit-file.js';
export { waitHealthy, probe, type HealthResult, type HealthTarget } from './health.js';
export { readGateway, type LiveGateway, type ForeignSource } from './live-unit.js';
export { SystemdCode } from './codes.js';
export { verifyUnits, securityExposure, type UnitFile, type UnitScope } from './analyze.js';
