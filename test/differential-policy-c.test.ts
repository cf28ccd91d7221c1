import { differentialSuite } from './differential/runner.js';
import { policyScenariosC } from './differential/scenarios-policy.js';

// The classes of wrong result the review found (issue 10); each scenario failed before its fix.
differentialSuite(
  'differential policy: driver spellings, option files, header search, assorted',
  policyScenariosC(),
);
