import { describe, expect, it } from 'vitest';
import { findSecret } from './secret-detectors.js';

describe('findSecret and paths', () => {
  it('does not flag a temporary-directory path with a random suffix', () => {
    expect(findSecret('/tmp/agentvm-bench-plan-apply-IiHRzi/release-source')).toBeUndefined();
    expect(findSecret('/var/folders/x1/agentvm-gitdir-Fk9LR1x/source.git')).toBeUndefined();
  });
  it('still flags a token inside a path or URL', () => {
    expect(findSecret('/srv/keys/Xk9pQ2mZr7TbW4nLs8VhY3cJd6FgA1eK/key')).toBeDefined();
    expect(findSecret('https://example.com/hook/aZ3kP9qL2mX7wR4tY8uB1nC6vD5sE0fG')).toBeDefined();
  });
});
