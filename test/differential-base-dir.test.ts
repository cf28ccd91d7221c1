import { differentialSuite } from './differential/runner.js';
import { BASE_DIR_SCENARIOS } from './differential/scenarios-base-dir.js';

// base_dir: a build in one directory, then in another; shared exactly where the bytes are the same.
differentialSuite('differential base_dir: two checkouts and two build directories', BASE_DIR_SCENARIOS);
