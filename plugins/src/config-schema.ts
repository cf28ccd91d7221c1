/**
 * The JSON-Schema subset plugin configs are written in: an object of scalar, string-array,
 * array-of-tables and nested-object properties, `additionalProperties: false` always. Small on purpose: a plugin's
 * config is a handful of keys, and the loader must say exactly which one is wrong.
 */

export type PropertySchema =
  | {
      readonly type: 'string';
      readonly enum?: readonly string[];
      readonly pattern?: string;
      /** What `pattern` accepts, in words, for messages: "an absolute path". Users never see the regex. */
      readonly format?: string;
      readonly default?: string;
      readonly description?: string;
    }
  | {
      /** A size: a string such as "10G", "512M", "1.5GiB", or an integer number of bytes. */
      readonly type: 'size';
      readonly default?: string | number;
      readonly description?: string;
    }
  | {
      readonly type: 'integer' | 'number';
      readonly minimum?: number;
      readonly maximum?: number;
      readonly default?: number;
      readonly description?: string;
    }
  | { readonly type: 'boolean'; readonly default?: boolean; readonly description?: string }
  | {
      readonly type: 'array';
      readonly items: { readonly type: 'string' };
      readonly default?: readonly string[];
      readonly description?: string;
    }
  | {
      /** An array of tables (TOML `[[name]]`), each checked against `items`. */
      readonly type: 'array';
      readonly items: ObjectSchema;
      readonly default?: readonly never[];
      readonly description?: string;
    }
  | ObjectSchema;

export interface ObjectSchema {
  readonly type: 'object';
  readonly properties: Readonly<Record<string, PropertySchema>>;
  readonly required?: readonly string[];
  /** Let unknown keys through unchecked: for a table that another schema validates later. */
  readonly additionalProperties?: boolean;
  readonly description?: string;
}

/**
 * A validation failure: the dotted key and what is wrong. `want` says, in plain words, what the key
 * takes and what it got ("an integer, got string \"4\""), for a message of the form
 * `expected <want>`; it is undefined for a missing required key and an unknown key.
 */
export class ConfigSchemaError extends Error {
  /** Every problem found, this one first: a config is checked whole, so a user fixes all at once. */
  all: readonly ConfigSchemaError[] = [this];

  constructor(
    readonly key: string,
    readonly expected: string,
    readonly want?: string,
  ) {
    super(key ? `"${key}": ${expected}` : expected);
  }
}

/** Edit distance, for "did you mean": small strings only (config keys). */
function distance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++)
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = cur;
  }
  return prev[b.length]!;
}

/** The known key closest to `key` when it is close enough to be a typo, else undefined. */
export function didYouMean(key: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Math.max(1, Math.floor(key.length / 3)) + 1;
  for (const k of known) {
    const d = distance(key.toLowerCase(), k.toLowerCase());
    if (d < bestDistance) {
      best = k;
      bestDistance = d;
    }
  }
  return best;
}

/** What a size looks like: a number, an optional K/M/G/T unit, an optional "B" or "iB". */
const SIZE = /^\s*\d+(?:\.\d+)?\s*[KMGT]?(?:i?B)?\s*$/i;

/** A failure whose message is "expected <want>". */
const wrong = (key: string, want: string) => new ConfigSchemaError(key, `expected ${want}`, want);

function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v === 'object' ? 'a table' : `${typeof v} ${JSON.stringify(v)}`;
}

function checkProperty(schema: PropertySchema, value: unknown, key: string): unknown {
  switch (schema.type) {
    case 'string':
      if (typeof value !== 'string') throw wrong(key, `a string, got ${typeName(value)}`);
      if (schema.enum && !schema.enum.includes(value))
        throw wrong(key, `one of ${schema.enum.map((e) => `"${e}"`).join(', ')}, got "${value}"`);
      if (schema.pattern && !new RegExp(schema.pattern).test(value)) {
        const want = schema.format ?? schema.description ?? 'a value of the form its documentation gives';
        throw new ConfigSchemaError(
          key,
          `"${value}" does not match: expected ${want}`,
          `${want}, got "${value}"`,
        );
      }
      return value;
    case 'size':
      if (
        typeof value === 'number'
          ? !(Number.isSafeInteger(value) && value >= 0)
          : typeof value !== 'string' || !SIZE.test(value)
      )
        throw wrong(key, `a size such as "10G", "512M" or a number of bytes, got ${typeName(value)}`);
      return value;
    case 'integer':
    case 'number': {
      const ok = typeof value === 'number' && (schema.type === 'number' || Number.isInteger(value));
      const kind = schema.type === 'integer' ? 'an integer' : 'a number';
      if (!ok) throw wrong(key, `${kind}, got ${typeName(value)}`);
      if (schema.minimum !== undefined && (value as number) < schema.minimum)
        throw new ConfigSchemaError(
          key,
          `must be at least ${schema.minimum}`,
          `${kind} of at least ${schema.minimum}, got ${value}`,
        );
      if (schema.maximum !== undefined && (value as number) > schema.maximum)
        throw new ConfigSchemaError(
          key,
          `must be at most ${schema.maximum}`,
          `${kind} of at most ${schema.maximum}, got ${value}`,
        );
      return value;
    }
    case 'boolean':
      if (typeof value !== 'boolean') throw wrong(key, `true or false, got ${typeName(value)}`);
      return value;
    case 'array':
      if (schema.items.type === 'object') {
        const items = schema.items;
        if (!Array.isArray(value)) throw wrong(key, `an array of tables, got ${typeName(value)}`);
        return Object.freeze(value.map((v, i) => validateObject(items, v, `${key}[${i}]`)));
      }
      if (!Array.isArray(value) || value.some((v) => typeof v !== 'string'))
        throw wrong(key, `an array of strings, got ${typeName(value)}`);
      return Object.freeze([...value]);
    case 'object':
      return validateObject(schema, value, key);
  }
}

/** Problems found so far in one validation; checking goes on past each one. */
let found: ConfigSchemaError[] | undefined;

function report(err: ConfigSchemaError): void {
  if (!found) throw err;
  found.push(err);
}

function validateObject(
  schema: ObjectSchema,
  value: unknown,
  prefix: string,
): Readonly<Record<string, unknown>> {
  if (value === undefined) value = {};
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw wrong(prefix, `a table, got ${typeName(value)}`);
  const input = value as Record<string, unknown>;
  const known = Object.keys(schema.properties);
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(input)) {
    if (Object.hasOwn(schema.properties, key)) continue;
    if (schema.additionalProperties) out[key] = input[key];
    else {
      const at = prefix ? `${prefix}.${key}` : key;
      const near = didYouMean(key, known);
      report(
        new ConfigSchemaError(
          at,
          `unknown key${near ? ` (did you mean "${near}"?)` : ''} (known keys: ${known.join(', ') || 'none'})`,
        ),
      );
    }
  }
  for (const [key, prop] of Object.entries(schema.properties)) {
    const at = prefix ? `${prefix}.${key}` : key;
    const v = input[key];
    try {
      if (v === undefined) {
        if (schema.required?.includes(key)) throw new ConfigSchemaError(at, 'is required');
        if (prop.type === 'object') out[key] = validateObject(prop, undefined, at);
        else if (prop.default !== undefined) out[key] = prop.default;
        continue;
      }
      out[key] = checkProperty(prop, v, at);
    } catch (err) {
      if (!(err instanceof ConfigSchemaError)) throw err;
      report(err);
    }
  }
  return Object.freeze(out);
}

/**
 * Checks `value` against `schema`, fills in defaults and freezes the result. Throws a
 * ConfigSchemaError for the first problem, whose `all` lists every problem in the config.
 */
export function validateConfig<C>(schema: ObjectSchema, value: unknown): C {
  const outer = found;
  found = [];
  try {
    const result = validateObject(schema, value, '');
    const [first] = found;
    if (first) {
      first.all = found;
      throw first;
    }
    return result as C;
  } catch (err) {
    if (err instanceof ConfigSchemaError && found.length > 0 && !found.includes(err)) {
      found.unshift(err);
      err.all = found;
    }
    throw err;
  } finally {
    found = outer;
  }
}
