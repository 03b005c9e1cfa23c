// The one redaction boundary holds for output paths no document reaches: a token pasted where a command name goes
// is echoed by the unknown-command hook ("did you mean"), and must come out masked in text and JSON alike.

import { describe, expect, it } from 'vitest';
import { agentvm, assertBuilt } from './support/cli.js';

// Built at run time so no token-shaped literal is committed (gitleaks-style scanners would flag the test itself).
const CANARY = ['gl', 'pat-', 'Zk4q9TmW2xVb7NcR1pLs'].join('');

describe('the redaction boundary on the CLI’s own messages', () => {
  it('GIVEN a token typed as a command WHEN agentvm answers "unknown command" THEN the token is masked, exit 1', async () => {
    assertBuilt();
    for (const args of [[CANARY], [CANARY, '--json']]) {
      const r = await agentvm(args);
      expect(r.code).toBe(1);
      expect(`${r.stdout}${r.stderr}`).toContain('Unknown command');
      expect(`${r.stdout}${r.stderr}`).not.toContain(CANARY);
    }
  });
});
