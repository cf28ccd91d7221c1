import { differentialSuite } from './differential/runner.js';
import { policyScenariosB } from './differential/scenarios-policy.js';

// The classes of wrong result the review found (issue 10); each scenario failed before its fix.
differentialSuite(
  'differential policy: assembler includes, command line, compiler identity, PCH',
  policyScenariosB(),
);
