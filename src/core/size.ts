// Sizes as operators write them: `16384`, `16k`, `16KiB`, `1MiB` (binary units).

const UNITS: Record<string, number> = { '': 1, b: 1, k: 1024, kb: 1024, kib: 1024, m: 1024 ** 2, mb: 1024 ** 2, mib: 1024 ** 2 };

/** Parses a size into bytes; returns undefined when the text is not one. */
export function parseSize(text: string): number | undefined {
  const m = /^\s*(\d+)\s*([a-z]*)\s*$/i.exec(text);
  const unit = m ? UNITS[m[2]!.toLowerCase()] : undefined;
  return unit === undefined ? undefined : Number(m![1]) * unit;
}
