import { differentialSuite } from './differential/runner.js';
import { holdingScenariosB } from './differential/scenarios-holding.js';

differentialSuite(
  'differential: depfiles, debug info, assembler, uncached calls, shared cache',
  holdingScenariosB(),
);
