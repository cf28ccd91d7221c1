import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: [
      'core/test/**/*.test.ts',
      'plugins/test/**/*.test.ts',
      'sandbox-*/test/**/*.test.ts',
      'resolver-*/test/**/*.test.ts',
      'plugins/examples/*/test/**/*.test.ts',
      'test/**/*.test.ts',
    ],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Integration tests start daemons and compilers; two cores on CI.
    maxWorkers: 2,
  },
});
