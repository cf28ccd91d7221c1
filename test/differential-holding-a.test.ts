import { differentialSuite } from './differential/runner.js';
import { holdingScenariosA } from './differential/scenarios-holding.js';

differentialSuite('differential: arguments, headers, environment', holdingScenariosA());
