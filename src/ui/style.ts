// Terminal styling for plain-text views. Colour only on a TTY, never under NO_COLOR or when CI asks for plain output
// (https://no-color.org). Views take a Style so tests and pipes get escape-free text.

export interface Style {
  red(s: string): string;
  yellow(s: string): string;
  green(s: string): string;
  cyan(s: string): string;
  bold(s: string): string;
  dim(s: string): string;
}

const wrap = (open: number, close: number) => (s: string) => `\u001b[${open}m${s}\u001b[${close}m`;

export const colorStyle: Style = {
  red: wrap(31, 39),
  yellow: wrap(33, 39),
  green: wrap(32, 39),
  cyan: wrap(36, 39),
  bold: wrap(1, 22),
  dim: wrap(2, 22),
};

const id = (s: string) => s;
export const plainStyle: Style = { red: id, yellow: id, green: id, cyan: id, bold: id, dim: id };

export function styleFor(stream: { isTTY?: boolean }, env: NodeJS.ProcessEnv = process.env): Style {
  if (!stream.isTTY) return plainStyle;
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== '') return plainStyle;
  if (env.TERM === 'dumb') return plainStyle;
  return colorStyle;
}
