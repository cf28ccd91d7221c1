export * from './config-schema.js';
export * from './define-plugin.js';
export * from './errors.js';
export * from './job-limits.js';
export * from './loader.js';
export * from './outputs.js';
export type * from './resolver.js';
export type * from './sandbox.js';
export * from './tokens.js';
