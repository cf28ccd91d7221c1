import { differentialSuite } from './differential/runner.js';
import { policyScenariosA } from './differential/scenarios-policy.js';

// The classes of wrong result the review found (issue 10); each scenario failed before its fix.
differentialSuite(
  'differential policy: colour, drivers, preprocessor blind spots, symlinked cwd',
  policyScenariosA(),
);
