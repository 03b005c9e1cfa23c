// Process checks for teardown assertions: which processes still mention a run directory or VM name.

import { readdirSync, readFileSync } from 'node:fs';

/** Processes (other than this one) whose command line mentions `needle`, as `pid: cmdline`. */
export function processesMentioning(needle: string): string[] {
  const found: string[] = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
      if (cmdline.includes(needle) && Number(pid) !== process.pid) found.push(`${pid}: ${cmdline.slice(0, 200)}`);
    } catch {
      // The process exited while we looked.
    }
  }
  return found;
}
