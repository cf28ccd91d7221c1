import { differentialSuite } from './differential/runner.js';
import { mutationScenarios, TOOLCHAINS } from './differential/scenarios-mutations.js';

differentialSuite(
  'differential mutations: clang++',
  mutationScenarios(TOOLCHAINS.filter((t) => t.compiler === 'clang++')),
);
