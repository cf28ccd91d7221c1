import { differentialSuite } from './differential/runner.js';
import { mutationScenarios, TOOLCHAINS } from './differential/scenarios-mutations.js';

differentialSuite(
  'differential mutations: gcc',
  mutationScenarios(TOOLCHAINS.filter((t) => t.compiler === 'gcc')),
);
