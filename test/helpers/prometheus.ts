/**
 * A strict reader of Prometheus's text exposition format (0.0.4), for tests: every line is a
 * `# HELP`, a `# TYPE` before the family's first sample, or a `name{labels} value` sample of a
 * declared family; anything else throws, naming the line.
 */
export interface Scrape {
  /** Family name → its TYPE. */
  readonly types: ReadonlyMap<string, string>;
  /** Family name → its HELP text. */
  readonly help: ReadonlyMap<string, string>;
  /** The value of one sample; undefined when there is none with exactly these labels. */
  value(name: string, labels?: Readonly<Record<string, string>>): number | undefined;
  /** Every sample of `name`: its labels and value. */
  samples(name: string): { labels: Record<string, string>; value: number }[];
}

const NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*';
const SAMPLE = new RegExp(`^(${NAME})(?:\\{(.*)\\})? (\\S+)$`);
const LABEL = /^([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)/;
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);

const key = (name: string, labels: Readonly<Record<string, string>>) =>
  `${name}${JSON.stringify(Object.entries(labels).sort(([a], [b]) => a.localeCompare(b)))}`;

function parseLabels(text: string, line: string): Record<string, string> {
  const labels: Record<string, string> = {};
  let rest = text;
  while (rest.length) {
    const m = LABEL.exec(rest);
    if (!m) throw new Error(`bad labels in ${JSON.stringify(line)}`);
    if (Object.hasOwn(labels, m[1]!)) throw new Error(`label ${m[1]} twice in ${JSON.stringify(line)}`);
    labels[m[1]!] = m[2]!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
    rest = rest.slice(m[0].length);
  }
  return labels;
}

function familyOf(name: string, types: ReadonlyMap<string, string>): string | undefined {
  if (types.has(name)) return name;
  const m = /^(.*)_(bucket|sum|count)$/.exec(name);
  return m && ['histogram', 'summary'].includes(types.get(m[1]!) ?? '') ? m[1] : undefined;
}

export function parsePrometheus(text: string): Scrape {
  if (!text.endsWith('\n')) throw new Error('the exposition does not end with a newline');
  const types = new Map<string, string>();
  const help = new Map<string, string>();
  const values = new Map<string, number>();
  const byName = new Map<string, { labels: Record<string, string>; value: number }[]>();
  const seenSamples = new Set<string>();
  for (const line of text.slice(0, -1).split('\n')) {
    const meta = /^# (HELP|TYPE) (\S+) (.*)$/.exec(line);
    if (meta) {
      const [, kind, name, rest] = meta;
      if (!new RegExp(`^${NAME}$`).test(name!)) throw new Error(`bad metric name ${name}`);
      if (kind === 'HELP') {
        if (help.has(name!)) throw new Error(`HELP for ${name} twice`);
        help.set(name!, rest!);
      } else {
        if (!TYPES.has(rest!)) throw new Error(`bad TYPE ${rest} for ${name}`);
        if (types.has(name!)) throw new Error(`TYPE for ${name} twice`);
        if (seenSamples.has(name!)) throw new Error(`TYPE for ${name} after its samples`);
        types.set(name!, rest!);
      }
      continue;
    }
    if (line.startsWith('#')) continue;
    const m = SAMPLE.exec(line);
    if (!m) throw new Error(`not a sample line: ${JSON.stringify(line)}`);
    const [, name, labelText, valueText] = m;
    const family = familyOf(name!, types);
    if (!family) throw new Error(`sample of ${name} before any TYPE for it`);
    seenSamples.add(family);
    const value = valueText === '+Inf' ? Infinity : valueText === '-Inf' ? -Infinity : Number(valueText);
    if (Number.isNaN(value) && valueText !== 'NaN') throw new Error(`bad value in ${JSON.stringify(line)}`);
    const labels = parseLabels(labelText ?? '', line);
    const k = key(name!, labels);
    if (values.has(k)) throw new Error(`sample ${k} twice`);
    values.set(k, value);
    byName.set(name!, [...(byName.get(name!) ?? []), { labels, value }]);
  }
  for (const [name, type] of types) {
    if (type === 'counter' && !name.endsWith('_total'))
      throw new Error(`counter ${name} does not end in _total`);
  }
  return {
    types,
    help,
    value: (name, labels = {}) => values.get(key(name, labels)),
    samples: (name) => byName.get(name) ?? [],
  };
}
