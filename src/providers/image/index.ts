// The image provider's public surface so far: offline Sigstore verification of an artifact pinned by sha256.
// Importing this is cheap; the Sigstore libraries load on the first verification.

export { verifyArtifact, type VerifyRequest, type VerifyResponse, type VerifyThresholds } from './verify.js';
export { SignatureCode } from './signature-codes.js';
export { exactSanPattern, publicKeyHint, type SignaturePolicy } from './policy.js';
export { BUNDLE_MEDIA_TYPES } from './bundle.js';
export {
  PUBLIC_GOOD_TRUSTED_ROOT_SHA256,
  SHIPPED_TRUSTED_ROOT_PATH,
  TRUSTED_ROOT_MEDIA_TYPES,
  checkTrustedRoot,
  emptyTrustedRoot,
  loadShippedTrustedRoot,
  type TrustedRootInput,
  type TrustedRootResult,
} from './trusted-root.js';
