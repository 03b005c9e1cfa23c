import { describe, expect, it } from 'vitest';
import type { Plan } from '../engine/plan.js';
import { renderCapabilitiesMarkdown, renderCapabilitiesText } from './plan-capabilities.js';
import { plainStyle } from './style.js';

const plan = {
  capabilities: [
    {
      workload: 'research',
      egress: [],
      data: [
        {
          change: 'added',
          path: 'projects/research',
          access: 'read-write',
          was: null,
          risk: 'new path: the agent may read, change and delete these files',
        },
        {
          change: 'widened',
          path: 'projects/shared',
          access: 'read-write',
          was: 'read-only',
          risk: 'widened: the agent may now change and delete these files',
        },
        { change: 'removed', path: 'projects/old', access: 'read-only', was: null, risk: null },
        { change: 'unchanged', path: 'projects/keep', access: 'read-only', was: null, risk: null },
      ],
    },
  ],
} as unknown as Plan;

describe('data lines in the capabilities block', () => {
  it('flags a new path and a widened grant like new egress in text, and lists a removed one plainly', () => {
    expect(renderCapabilitiesText(plan, plainStyle)).toEqual([
      '',
      'Capabilities — what workloads may do changes:',
      '  research',
      '    ⚠ data +projects/research read-write (new path: the agent may read, change and delete these files)',
      '    ⚠ data +projects/shared read-only → read-write (widened: the agent may now change and delete these files)',
      '    - data -projects/old read-only',
    ]);
  });

  it('shows the same lines in markdown (pull-request comments)', () => {
    const md = renderCapabilitiesMarkdown(plan, (s) => s).join('\n');
    expect(md).toContain(
      '- `research`: ⚠️ data +projects/shared read-only → read-write (widened: the agent may now change and delete these files)',
    );
    expect(md).toContain('- `research`: data -projects/old read-only');
    expect(md).not.toContain('projects/keep');
  });
});
