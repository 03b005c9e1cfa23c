// oclif hook for an unknown command: a diagnostic with a "did you mean", exit code 1, no stack trace.

import type { Hook } from '@oclif/core';
import { didYouMean } from '../contracts/did-you-mean.js';
import { renderDiagnostic } from '../ui/diagnostics-text.js';
import { styleFor } from '../ui/style.js';
import { say } from './base-command.js';
import { redactValue } from '../secrets/redaction.js';

const hook: Hook<'command_not_found'> = async function (opts) {
  const ids = opts.config.commandIDs.map((id) => id.replaceAll(':', ' '));
  const typed = opts.id.replaceAll(':', ' ');
  const guess = didYouMean(typed, ids);
  const summary = `Unknown command \`${typed}\`${guess ? ` — did you mean \`${guess}\`?` : '.'}`;
  const detail = `Commands: ${ids.sort().join(', ')}. Run \`agentvm --help\` for the whole tool.`;
  if (opts.argv?.includes('--json')) {
    // The typed word is echoed back: it passes the redaction boundary like every output (a token pasted as a command).
    say(
      JSON.stringify(
        redactValue({
          error: {
            code: 'cli.unknown-command',
            message: summary,
            source: 'user',
            diagnostics: [{ code: 'cli.unknown-command', severity: 'error', summary, detail }],
          },
        }),
        null,
        2,
      ),
    );
  } else {
    say(
      renderDiagnostic({ code: 'cli.unknown-command', severity: 'error', summary, detail }, styleFor(process.stderr)),
      'stderr',
    );
  }
  process.exit(1);
};

export default hook;
