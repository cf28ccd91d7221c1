import { differentialSuite } from './differential/runner.js';
import { policyScenariosC } from './differential/scenarios-policy.js';

// Expected to fail until the core fixes for these classes land (see scenarios-policy.ts).
differentialSuite(
  'differential policy: driver spellings, option files, header search, assorted',
  policyScenariosC(),
);
