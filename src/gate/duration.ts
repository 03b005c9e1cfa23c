// Durations as the manifest writes them (`30m`, `8h`, `2d`): the one grammar for a preview's maxTtl and `--ttl`.

const DURATION = /^([1-9][0-9]{0,5})(s|m|h|d)$/;
const UNIT_MS: Record<string, number> = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Milliseconds of `30m`-style text, or undefined when it is not one (the schema's `^[1-9][0-9]{0,5}(s|m|h|d)$`). */
export function parseDuration(text: string): number | undefined {
  const m = DURATION.exec(text);
  if (!m) return undefined;
  return Number(m[1]) * UNIT_MS[m[2]!]!;
}

/** The largest whole unit that represents `ms` exactly (`90m` stays `90m`, `7200000` is `2h`). */
export function formatDuration(ms: number): string {
  for (const unit of ['d', 'h', 'm'] as const) if (ms % UNIT_MS[unit]! === 0) return `${ms / UNIT_MS[unit]!}${unit}`;
  return `${Math.ceil(ms / 1000)}s`;
}
