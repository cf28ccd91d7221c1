import { type UnshareConfig } from './config.js';
export type { UnshareConfig } from './config.js';
export { UnshareSandbox } from './unshare-sandbox.js';
declare const _default: import("@kiln/plugins").PluginDescriptor<UnshareConfig>;
export default _default;
