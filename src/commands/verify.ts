import { Args, Flags } from '@oclif/core';
import { AgentvmCommand, type Outcome } from '../cli/base-command.js';
import { runVerify, type VerifyResult } from '../app/verify.js';
import { ExitCode } from '../diagnostics/index.js';
import { renderDiagnostics } from '../ui/diagnostics-text.js';
import { styleFor } from '../ui/style.js';

export default class Verify extends AgentvmCommand<VerifyResult> {
  static override summary = 'Verify a Sigstore bundle for an artifact (or its pinned digest) against an exact signer.';
  static override description = `Offline verification, failing closed: the bundle must be bound to the artifact's sha256, and signed either by exactly --identity from exactly --issuer (keyless, checked against the trusted root — the Sigstore public-good root shipped with agentvm, pinned by hash, unless --trusted-root is given) or by the --key public key.

Exit codes: 0 verified, 1 refused or bad input. The refusal names the check that failed (signature.digest-mismatch, signature.identity, signature.issuer, signature.trusted-root, …).`;
  static override examples = [
    {
      description: 'Keyless (GitHub Actions) signature of a release tarball',
      command:
        '<%= config.bin %> verify agent-pool-1.0.0.tgz --bundle release.sigstore.json --identity https://github.com/acme/agents/.github/workflows/release.yml@refs/heads/main --issuer https://token.actions.githubusercontent.com',
    },
    {
      description: 'Key-signed bundle (examples/keys)',
      command:
        '<%= config.bin %> verify examples/artifacts/agent-pool-1.0.0.tgz --bundle examples/fleet/workloads/agent-pool/release.sigstore.json --key examples/keys/example-signing.pub.pem',
    },
    {
      description: 'A DSSE attestation by pinned digest only',
      command: '<%= config.bin %> verify sha256:<64 hex> --bundle att.sigstore.json --identity … --issuer …',
    },
  ];
  static override args = {
    artifact: Args.string({
      required: true,
      description: 'Artifact file, or its pinned sha256 digest (64 hex, optionally prefixed sha256:).',
    }),
  };
  static override flags = {
    bundle: Flags.string({ required: true, summary: 'Sigstore bundle file (v0.1–v0.3).', helpValue: 'FILE' }),
    identity: Flags.string({
      summary: 'Exact certificate identity (SAN) the signer must have.',
      helpValue: 'ID',
      dependsOn: ['issuer'],
    }),
    issuer: Flags.string({
      summary: 'Exact OIDC issuer URL of the signer.',
      helpValue: 'URL',
      dependsOn: ['identity'],
    }),
    key: Flags.string({
      summary: 'PEM public key the bundle must be signed with.',
      helpValue: 'FILE',
      exclusive: ['identity', 'issuer'],
    }),
    'trusted-root': Flags.string({
      summary: 'Custom Sigstore trusted root (JSON) instead of the shipped public-good root.',
      helpValue: 'FILE',
    }),
    'trusted-root-sha256': Flags.string({
      summary: 'Pin for --trusted-root: its expected sha256.',
      helpValue: 'HEX',
      dependsOn: ['trusted-root'],
    }),
  };

  protected async execute(): Promise<Outcome<VerifyResult>> {
    const { args, flags } = await this.parse(Verify);
    const result = await runVerify({
      artifact: args.artifact,
      bundle: flags.bundle,
      ...(flags.identity !== undefined ? { identity: flags.identity } : {}),
      ...(flags.issuer !== undefined ? { issuer: flags.issuer } : {}),
      ...(flags.key !== undefined ? { key: flags.key } : {}),
      ...(flags['trusted-root'] !== undefined ? { trustedRoot: flags['trusted-root'] } : {}),
      ...(flags['trusted-root-sha256'] !== undefined ? { trustedRootSha256: flags['trusted-root-sha256'] } : {}),
    });
    const style = styleFor(process.stdout);
    const who = result.signer?.identity
      ? `${result.signer.identity} (${result.signer.issuer})`
      : result.signer?.keyHint
        ? `key ${result.signer.keyHint}`
        : '';
    const text = result.verified
      ? style.green(`✓ Verified ${result.artifact} (${result.digest}) signed by ${who}.`)
      : `${renderDiagnostics(result.diagnostics, style)}\n\n${style.red(`✗ Refused: ${result.artifact} (${result.digest}) is not verified.`)}`;
    return { result, text, exitCode: result.verified ? ExitCode.Ok : ExitCode.Error };
  }
}
