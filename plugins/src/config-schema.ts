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
      readonly default?: string;
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

/** A validation failure: the dotted key and what was expected. */
export class ConfigSchemaError extends Error {
  constructor(
    readonly key: string,
    readonly expected: string,
  ) {
    super(key ? `"${key}": ${expected}` : expected);
  }
}

function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v === 'object' ? 'a table' : `${typeof v} ${JSON.stringify(v)}`;
}

function checkProperty(schema: PropertySchema, value: unknown, key: string): unknown {
  switch (schema.type) {
    case 'string':
      if (typeof value !== 'string')
        throw new ConfigSchemaError(key, `expected a string, got ${typeName(value)}`);
      if (schema.enum && !schema.enum.includes(value))
        throw new ConfigSchemaError(key, `expected one of ${schema.enum.join(', ')}, got "${value}"`);
      if (schema.pattern && !new RegExp(schema.pattern).test(value))
        throw new ConfigSchemaError(key, `"${value}" does not match ${schema.pattern}`);
      return value;
    case 'integer':
    case 'number': {
      const ok = typeof value === 'number' && (schema.type === 'number' || Number.isInteger(value));
      if (!ok)
        throw new ConfigSchemaError(
          key,
          `expected ${schema.type === 'integer' ? 'an integer' : 'a number'}, got ${typeName(value)}`,
        );
      if (schema.minimum !== undefined && (value as number) < schema.minimum)
        throw new ConfigSchemaError(key, `must be at least ${schema.minimum}`);
      if (schema.maximum !== undefined && (value as number) > schema.maximum)
        throw new ConfigSchemaError(key, `must be at most ${schema.maximum}`);
      return value;
    }
    case 'boolean':
      if (typeof value !== 'boolean')
        throw new ConfigSchemaError(key, `expected true or false, got ${typeName(value)}`);
      return value;
    case 'array':
      if (schema.items.type === 'object') {
        const items = schema.items;
        if (!Array.isArray(value))
          throw new ConfigSchemaError(key, `expected an array of tables, got ${typeName(value)}`);
        return Object.freeze(value.map((v, i) => validateObject(items, v, `${key}[${i}]`)));
      }
      if (!Array.isArray(value) || value.some((v) => typeof v !== 'string'))
        throw new ConfigSchemaError(key, `expected an array of strings, got ${typeName(value)}`);
      return Object.freeze([...value]);
    case 'object':
      return validateObject(schema, value, key);
  }
}

function validateObject(
  schema: ObjectSchema,
  value: unknown,
  prefix: string,
): Readonly<Record<string, unknown>> {
  if (value === undefined) value = {};
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw new ConfigSchemaError(prefix, `expected a table, got ${typeName(value)}`);
  const input = value as Record<string, unknown>;
  const known = Object.keys(schema.properties);
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(input)) {
    if (Object.hasOwn(schema.properties, key)) continue;
    if (schema.additionalProperties) out[key] = input[key];
    else {
      const at = prefix ? `${prefix}.${key}` : key;
      throw new ConfigSchemaError(at, `unknown key (known keys: ${known.join(', ') || 'none'})`);
    }
  }
  for (const [key, prop] of Object.entries(schema.properties)) {
    const at = prefix ? `${prefix}.${key}` : key;
    const v = input[key];
    if (v === undefined) {
      if (schema.required?.includes(key)) throw new ConfigSchemaError(at, 'is required');
      if (prop.type === 'object') out[key] = validateObject(prop, undefined, at);
      else if (prop.default !== undefined) out[key] = prop.default;
      continue;
    }
    out[key] = checkProperty(prop, v, at);
  }
  return Object.freeze(out);
}

/** Checks `value` against `schema`, fills in defaults and freezes the result; throws ConfigSchemaError. */
export function validateConfig<C>(schema: ObjectSchema, value: unknown): C {
  return validateObject(schema, value, '') as C;
}
