// The interactive runners: what `plan` and `apply` do on an interactive terminal (src/ui/interactive.ts decides).
// This module and everything it imports (ink, react) are loaded with a dynamic import() on that path only, so pipes,
// CI and --json never pay ink's start-up cost (DESIGN §6). Each runner unmounts ink before it returns, so the
// process exits as soon as the command is done.

import { createInterface } from 'node:readline';
import { Box, render, Static, Text, type Instance } from 'ink';
import type { ApplyEvent, ApplyResult } from '../../app/apply.js';
import type { Plan } from '../../engine/plan.js';
import { colorStyle } from '../style.js';
import { ApplyProgress } from './apply-progress.js';
import { ApplyView } from './apply-view.js';
import { PlanView } from './plan-view.js';

/** Live views redraw on this clock, however fast events come (a thousand resources must not mean a thousand frames). */
export const REDRAW_MS = 100;

const inkOptions = { stdout: process.stdout, stdin: process.stdin, stderr: process.stderr, exitOnCtrlC: false, patchConsole: false } as const;

async function close(instance: Instance): Promise<void> {
  instance.unmount();
  await instance.waitUntilExit();
}

/**
 * Prints the plan view once and returns. It goes through <Static> because ink clears the whole screen (scrollback
 * included) when a live frame is taller than the terminal, and a plan often is.
 */
export async function showPlan(plan: Plan, notes: string[] = []): Promise<void> {
  const instance = render(
    <Static items={['plan']}>
      {(key) => (
        <Box key={key} flexDirection="column">
          <PlanView plan={plan} />
          {notes.map((n, i) => (
            <Box key={i} marginTop={i === 0 ? 1 : 0}>
              <Text>{n}</Text>
            </Box>
          ))}
        </Box>
      )}
    </Static>,
    inkOptions,
  );
  await close(instance);
}

/**
 * Asks a yes/no question on the terminal. Only the exact answer `yes` approves; anything else, end of input
 * (Ctrl-D) and Ctrl-C decline — approval is never assumed. Whatever was typed (or pasted) before the question was
 * on the screen is thrown away first: a `yes` typed ahead never approves a plan nobody has seen.
 */
export async function askApproval(question: string, input: NodeJS.ReadStream = process.stdin, output: NodeJS.WriteStream = process.stdout): Promise<boolean> {
  await discardTypeAhead(input);
  return new Promise((resolve) => {
    const rl = createInterface({ input, output, terminal: true });
    let settled = false;
    const settle = (approved: boolean, newline: boolean): void => {
      if (settled) return;
      settled = true;
      if (newline) output.write('\n');
      rl.close();
      input.pause();
      resolve(approved);
    };
    rl.on('SIGINT', () => settle(false, true));
    rl.on('close', () => settle(false, true));
    rl.question(`${colorStyle.bold(question)} `, (answer) => settle(answer === 'yes', false));
  });
}

/** Input already waiting on the terminal: read in raw mode for a moment and dropped. */
async function discardTypeAhead(input: NodeJS.ReadStream, settleMs = 60): Promise<void> {
  if (!input.isTTY) return;
  const drop = (): void => {};
  input.setRawMode(true);
  input.on('data', drop);
  input.resume();
  await new Promise((resolve) => setTimeout(resolve, settleMs));
  input.off('data', drop);
  input.pause();
  input.setRawMode(false);
}

/**
 * Runs an apply under the live progress view: `run` receives the event sink to pass to runApply. The view ends in
 * the summary on success; on an error it stops drawing and the error propagates (the command renders it).
 */
export async function applyWithProgress(run: (onEvent: (e: ApplyEvent) => void) => Promise<ApplyResult>): Promise<ApplyResult> {
  const progress = new ApplyProgress();
  let started = false;
  let frame = 0;
  const view = (closed: boolean) => <ApplyView snapshot={started ? progress.snapshot() : undefined} frame={frame} rows={process.stdout.rows ?? 24} closed={closed} />;
  const instance = render(view(false), inkOptions);
  const timer = setInterval(() => {
    frame++;
    instance.rerender(view(false));
  }, REDRAW_MS);
  try {
    return await run((e) => {
      progress.update(e);
      // The first and last frames are drawn at once (the header, the summary); everything between on the clock.
      if (e.type === 'start') started = true;
      if (e.type === 'start' || e.type === 'finish') instance.rerender(view(false));
    });
  } finally {
    clearInterval(timer);
    instance.rerender(view(true));
    await close(instance);
  }
}
