import { differentialSuite } from './differential/runner.js';
import { policyScenariosB } from './differential/scenarios-policy.js';

// Expected to fail until the core fixes for these classes land (see scenarios-policy.ts).
differentialSuite(
  'differential policy: assembler includes, command line, compiler identity, PCH',
  policyScenariosB(),
);
