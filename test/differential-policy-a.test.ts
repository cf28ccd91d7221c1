import { differentialSuite } from './differential/runner.js';
import { policyScenariosA } from './differential/scenarios-policy.js';

// Expected to fail until the core fixes for these classes land (see scenarios-policy.ts).
differentialSuite(
  'differential policy: colour, drivers, preprocessor blind spots, symlinked cwd',
  policyScenariosA(),
);
