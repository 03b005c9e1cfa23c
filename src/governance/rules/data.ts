// Data grants name project paths relative to the host's project root. A grant may never reach outside that root.

import { errorDiag, type Diagnostic } from '../../diagnostics/index.js';
import { at, list, record, specOf, text, type WorkloadRule } from '../context.js';
import { describePathProblem, relativePathProblem } from '../../secrets/text-safety.js';

export const dataRules: WorkloadRule = (ctx) => {
  const doc = ctx.contract;
  if (!doc) return [];
  const out: Diagnostic[] = [];
  list(specOf(doc).data).forEach((raw, i) => {
    const path = text(record(raw)?.path);
    if (path === undefined) return;
    const problem = relativePathProblem(path);
    if (!problem) return;
    out.push(
      errorDiag(
        'name.path-traversal',
        `Data grant #${i + 1} ${describePathProblem(problem)}; grants are paths inside the host's project root.`,
        {
          detail:
            'Write the path relative to the project root, without a leading `/`, `~` or `..` (e.g. `projects/shared`). To grant a directory elsewhere, mount or link it under the project root on the host.',
          ...at(doc, ['spec', 'data', i, 'path']),
          address: ctx.address,
        },
      ),
    );
  });
  return out;
};
