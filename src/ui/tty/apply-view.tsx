// The ink view of a running apply: finished resources are printed once, in the order they finish, above a live
// area that holds one row per resource still to do — a spinner and elapsed time while it runs, what it waits on
// while its dependencies run, "queued" while the concurrency bound holds it back — and, at the end, the summary
// (the same facts as renderApplySummary). The live area is cut to the terminal's height: ink clears the whole
// screen when its live output is taller than the terminal.

import { Box, Static, Text } from 'ink';
import { renderApplySummary } from '../apply-text.js';
import { DiagnosticView } from './plan-view.js';
import type { ProgressRow, ProgressSnapshot } from './apply-progress.js';

export const SPINNER = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

const DOING: Record<string, string> = { create: 'creating', update: 'updating', replace: 'replacing', delete: 'deleting', noop: 'checking' };
const DONE: Record<string, string> = { create: 'created', update: 'updated', replace: 'replaced', delete: 'deleted', noop: 'unchanged' };

export function seconds(ms: number | undefined): string {
  return ms === undefined ? '' : `${(ms / 1000).toFixed(1)}s`;
}

function FinishedRow({ row }: { row: ProgressRow }) {
  switch (row.state) {
    case 'failed':
      return (
        <Box flexDirection="column">
          <Text>
            <Text color="red" bold>
              {'  ✗ '}
            </Text>
            {row.address}
            {'  '}
            <Text color="red">failed</Text>
            <Text dimColor>{`  ${seconds(row.elapsedMs)}`}</Text>
          </Text>
          <Box flexDirection="column" marginLeft={2}>
            {row.diagnostics.map((d, i) => (
              <DiagnosticView key={i} d={d} />
            ))}
          </Box>
        </Box>
      );
    case 'skipped':
      return (
        <Text>
          <Text color="yellow">{'  ↷ '}</Text>
          {row.address}
          {'  '}
          <Text color="yellow">skipped</Text>
          <Text dimColor>{` — ${row.message ?? ''}`}</Text>
        </Text>
      );
    case 'resumed':
      return (
        <Text dimColor>
          {'  ✓ '}
          {row.address}
          {'  already applied by the interrupted apply'}
        </Text>
      );
    default:
      return (
        <Text>
          <Text color="green" bold>
            {'  ✓ '}
          </Text>
          {row.address}
          {'  '}
          <Text color="green">{DONE[row.action]}</Text>
          <Text dimColor>{`  ${seconds(row.elapsedMs)}`}</Text>
        </Text>
      );
  }
}

function ActiveRow({ row, frame, closed }: { row: ProgressRow; frame: number; closed: boolean }) {
  if (row.state === 'running') {
    return (
      <Text wrap="truncate-end">
        <Text color="cyan">{`  ${closed ? '■' : SPINNER[frame % SPINNER.length]} `}</Text>
        {row.address}
        {'  '}
        <Text color="cyan">{DOING[row.action]}</Text>
        <Text dimColor>{`  ${seconds(row.elapsedMs)}${row.message ? `  ${row.message}` : ''}`}</Text>
      </Text>
    );
  }
  return (
    <Text dimColor wrap="truncate-end">
      {row.state === 'queued' ? `  · ${row.address}  queued (all apply slots busy)` : `  … ${row.address}  waiting on ${row.waitingOn.join(', ')}`}
    </Text>
  );
}

type StaticItem = { key: string; header: ProgressSnapshot } | { key: string; row: ProgressRow };

export function ApplyView({ snapshot, frame, rows, closed }: { snapshot: ProgressSnapshot | undefined; frame: number; rows: number; closed: boolean }) {
  // Append-only: <Static> prints only the items added since the last frame.
  const items: StaticItem[] = snapshot ? [{ key: 'header', header: snapshot }, ...snapshot.finished.map((row) => ({ key: row.address, row }))] : [];
  const active = snapshot?.active ?? [];
  const room = Math.max(3, rows - 4);
  const shown = active.length > room ? active.slice(0, room - 1) : active;
  const result = snapshot?.result;
  return (
    <Box flexDirection="column">
      <Static items={items}>
        {(item) =>
          'header' in item ? (
            <Text key={item.key}>
              <Text bold>{`Applying plan ${item.header.planId.slice(7, 19)} to host ${item.header.host}`}</Text>
              <Text dimColor>{` (apply ${item.header.applyId})`}</Text>
              {item.header.resumed ? <Text color="yellow"> — resuming an interrupted apply</Text> : null}
            </Text>
          ) : (
            <FinishedRow key={item.key} row={item.row} />
          )
        }
      </Static>
      {!snapshot && !closed ? (
        <Text>
          <Text color="cyan">{SPINNER[frame % SPINNER.length]}</Text> Checking that the plan is still current and taking the host's lease…
        </Text>
      ) : null}
      {shown.map((row) => (
        <ActiveRow key={row.address} row={row} frame={frame} closed={closed} />
      ))}
      {shown.length < active.length ? <Text dimColor>{`  … and ${active.length - shown.length} more`}</Text> : null}
      {result ? (
        <Box marginTop={1}>
          <Text bold color={result.status === 'partial' ? 'red' : 'green'}>
            {renderApplySummary(result)}
          </Text>
        </Box>
      ) : null}
    </Box>
  );
}
